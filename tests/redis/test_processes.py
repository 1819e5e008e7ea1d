"""update() is atomic across processes and keeps numbers exact (optimistic compare-and-swap)."""

from __future__ import annotations

import asyncio
import multiprocessing

import pytest

from motia_state import StateManager, ops
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis

PROCESSES = 8
INCREMENTS = 500


async def _increment(url: str, times: int) -> None:
    state = StateManager.from_url(url)
    try:
        for _ in range(times):
            await state.update("race", "counter", [ops.increment("n"), ops.increment("f", 0.5)])
    finally:
        await state.close()


def _worker(url: str, times: int) -> None:
    asyncio.run(_increment(url, times))


async def test_eight_processes_increment_without_losing_any(state: StateManager) -> None:
    start = {"n": 2**70, "f": 0.1, "empty": {}, "list": [], "big": 12345678901234567890}
    await state.set("race", "counter", start, ttl=600)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(REDIS_URL, INCREMENTS)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            await asyncio.to_thread(p.join, 240)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    final = await state.get("race", "counter")
    expected_f = 0.1
    for _ in range(PROCESSES * INCREMENTS):
        expected_f += 0.5
    assert final == {**start, "n": 2**70 + PROCESSES * INCREMENTS, "f": expected_f}
    assert type(final["empty"]) is dict and type(final["list"]) is list
    left = await state.ttl("race", "counter")
    assert left is not None and 500 < left <= 600  # update kept the entry's expiry
