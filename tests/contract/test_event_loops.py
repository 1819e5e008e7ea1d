"""A store used from one event loop after another (asyncio.run twice, a fresh loop per test) keeps working."""

from __future__ import annotations

import asyncio
from pathlib import Path

from motia_state import StateManager
from tests.contract.conftest import CONTRACT_FACTORIES as FACTORIES


def test_same_store_across_event_loops(backend: str, tmp_path: Path) -> None:
    state: StateManager = asyncio.run(FACTORIES[backend](tmp_path))

    async def write_and_read(i: int) -> object:
        await state.set("loops", "k", {"i": i})
        await state.update("loops", "k", [{"type": "increment", "path": "n"}])
        return await state.get("loops", "k")

    try:
        results = [asyncio.run(write_and_read(i)) for i in range(3)]
        assert results == [{"i": 0, "n": 1}, {"i": 1, "n": 1}, {"i": 2, "n": 1}]
        assert asyncio.run(state.keys("loops")) == ["k"]
    finally:
        asyncio.run(state.close())
