"""The step example of docs/motia.md runs as written, on the real SDK."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from motia_state import StateManager
from tests.motia.conftest import Engine

DOC = Path(__file__).resolve().parents[2] / "docs" / "motia.md"


def doc_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    (example,) = [b for b in blocks if "@with_state(store)" in b]
    return str(example)


async def test_docs_step_example(
    sdk: ModuleType, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example's SQLite path is relative
    namespace: dict[str, Any] = {}
    exec(compile(doc_example(), str(DOC), "exec"), namespace)
    store = namespace["store"]
    try:
        sdk.Motia().add_step(namespace["booking_step"], "steps/book_step.py")
        assert await engine.invoke("steps::book::trigger::queue(book)", {"venue": "Hall A"}) is None
        (scope,) = await store.list_groups()
        assert await store.get(scope, "booking") == {"venue": "Hall A", "status": "held"}
    finally:
        await store.close()
    # The data is in the SQLite file the example names, for any other process to read.
    again = StateManager.from_url("sqlite:///.motia/motia.state.db")
    try:
        assert await again.list(scope) == [{"venue": "Hall A", "status": "held"}]
    finally:
        await again.close()
