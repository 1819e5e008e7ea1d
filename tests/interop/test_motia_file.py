"""``motia-state import`` of the file written by Motia's own ``FileStateAdapter`` (``@motiadev/core``).

No server needed: Node writes ``.motia/motia.state.json`` in a temporary project, the installed script imports
it into SQLite, and the values are read back with motia-state.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from motia_state import StateManager
from motia_state.testing.helpers import assert_same
from tests.interop.node import Motia
from tests.interop.script import run_script

WRITES: dict[tuple[str, str], Any] = {
    ("trace-1", "booking"): {"customer": {"name": "Ada", "tier": "gold"}, "seats": 2, "tags": ["vip"]},
    ("trace-1", "payment.status"): "pending",
    ("trace-1", "ratio"): 1.5,
    ("trace-1", "paid"): False,
    ("trace-1", "nothing"): None,
    ("trace-1", "step:2"): {"done": True},  # a key with ':' (Motia splits at the first one)
    ("trace-2", "note"): '名前 ✓ 🚀 "quoted"\nline',
    ("trace-2", "list"): [1, [2], {"three": 3}, None],
    ("trace-2", "empty"): {},
}


async def test_import_of_a_file_state_adapter_file(motia: Motia, tmp_path: Path) -> None:
    motia_dir = tmp_path / ".motia"
    calls = [["set", scope, key, value] for (scope, key), value in WRITES.items()]
    results = await motia.file(motia_dir, *calls, ["traceIds"], ["keys", "trace-1"])
    assert sorted(results[-2]) == ["trace-1", "trace-2"]
    assert sorted(results[-1]) == sorted(k for s, k in WRITES if s == "trace-1")
    # Motia's file: "<traceId>:<key>" -> JSON.stringify(value)
    written = json.loads((motia_dir / "motia.state.json").read_text())
    assert written == {
        f"{s}:{k}": json.dumps(v, ensure_ascii=False, separators=(",", ":")) for (s, k), v in WRITES.items()
    }

    url = f"sqlite:///{tmp_path / 'imported.db'}"
    summary = await asyncio.to_thread(run_script, "--url", url, "import", ".motia/motia.state.json", cwd=tmp_path)
    assert summary == {"format": "file-adapter", "entries": len(WRITES), "scopes": 2, "skipped_expired": 0}

    async with StateManager.from_url(url) as state:
        assert await state.list_groups() == ["trace-1", "trace-2"]
        for (scope, key), value in WRITES.items():
            assert_same(await state.get(scope, key), value, f"{scope}/{key}")
            assert await state.ttl(scope, key) is None
        assert await state.keys("trace-1") == sorted(k for s, k in WRITES if s == "trace-1")
        assert await state.get_many("trace-1", ["nothing", "absent"]) == {"nothing": None}
        done = await state.items(filters=[{"path": ["customer", "tier"], "op": "eq", "value": "gold"}])
        assert [(i.scope, i.key) for i in done] == [("trace-1", "booking")]
