"""mypy --strict accepts MotiaState as the SDK's ``InternalStateManager``, and refuses a bare StateManager.

The motia wheel ships no ``py.typed`` marker, so mypy would treat every SDK name as ``Any`` and accept
anything; ``--follow-untyped-imports`` makes it read the SDK's real protocol (errors inside the SDK itself
stay silenced, as for any installed package).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

WRAPPED = """
    from typing import Any

    from motia import FlowContext, TriggerInfo, queue, step, stateManager
    from motia.types import InternalStateManager

    from motia_state import StateManager
    from motia_state.motia import MotiaState, from_config, from_url, with_state


    async def uses(state: InternalStateManager) -> Any:
        await state.clear("s")
        return await state.set("s", "k", {"n": 1})


    store: InternalStateManager = MotiaState(StateManager.from_url("memory://"))
    other: InternalStateManager = from_url("sqlite:///state.db")
    configured: InternalStateManager = from_config()
    sdk_own: InternalStateManager = stateManager  # control: the SDK's manager fits its own protocol
    typed_store = MotiaState(StateManager.from_url("memory://"))


    @with_state(typed_store)
    async def handler(data: dict[str, Any], ctx: FlowContext[Any]) -> None:
        await uses(ctx.state)


    async def main() -> None:
        await uses(typed_store)
        await uses(from_url("memory://"))
        definition = step({"name": "book", "triggers": [queue("book")]}, handler)
        assert definition is not None


    async def enqueue(event: Any) -> None: ...


    ctx: FlowContext[Any] = FlowContext(
        enqueue=enqueue, trace_id="t", state=typed_store, logger=None, trigger=TriggerInfo(type="queue")
    )
"""

BARE = """
    from motia.types import InternalStateManager

    from motia_state import StateManager

    bare: InternalStateManager = StateManager.from_url("memory://")
"""


def _mypy(tmp_path: Path, **files: str) -> tuple[int, str]:
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--follow-untyped-imports",
        "--no-error-summary",
        "--show-error-codes",
        f"--cache-dir={tmp_path / '.mypy_cache'}",
        *(f"{name}.py" for name in files),
    ]
    # cwd=tmp_path: no project config is read, and the probe files are the only sources.
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.timeout(900)
def test_mypy_strict_accepts_the_wrapper_and_names_the_bare_managers_differences(
    sdk: ModuleType, tmp_path: Path
) -> None:
    code, out = _mypy(tmp_path, wrapped=WRAPPED, bare=BARE)
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("wrapped.py")], out
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 1, out
    assert errors[0].startswith("bare.py:6: error: Incompatible types in assignment"), out
    assert errors[0].endswith("[assignment]"), out
    # The only member that conflicts is clear(): the protocol's returns None, StateManager's an int.
    conflicts = set(re.findall(r"note:\s+def (\w+)\(", out))
    assert conflicts == {"clear"}, out
    assert "def clear(self, scope: str) -> Coroutine[Any, Any, None]" in out, out
    assert "def clear(self, scope: str) -> Coroutine[Any, Any, int]" in out, out
    assert code == 1, out
