"""Without opentelemetry-api installed, motia-state works the same and telemetry stays off."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    sys.modules["opentelemetry"] = None  # as if the package were not installed: every import of it fails
    from motia_state import StateManager, telemetry
    assert telemetry.API is False and telemetry.current() is None

    async def main(url):
        async with StateManager.from_url(url, telemetry_scopes=True) as state:
            async with state.watch("s") as changes:
                await state.set("s", "k", {"n": 1})
                await state.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])
                assert (await anext(changes)).traceparent is None
            assert await state.get("s", "k") == {"n": 2}
            hit = asyncio.Event()

            @state.on_change("t", scope="s", start="beginning")
            async def handler(change):
                hit.set()

            task = asyncio.ensure_future(state.run_triggers())
            await asyncio.wait_for(hit.wait(), 20)
            task.cancel()
        print("ok", url.split(":")[0])

    for url in sys.argv[1:]:
        asyncio.run(main(url))
    """
)


def test_no_api_no_telemetry(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, "memory://", f"sqlite:///{tmp_path / 'state.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "memory", "ok", "sqlite"]
