"""update() is atomic across processes: 8 processes x 500 increments of one key end at exactly 4000."""

from __future__ import annotations

import multiprocessing

import pytest

from motia_state import StateManager
from tests.postgres.workers import increment_many
from tests.services import PG_URL

pytestmark = pytest.mark.postgres

PROCESSES = 8
TIMES = 500


@pytest.mark.timeout(240)
async def test_eight_processes_increment_one_key(pg: StateManager) -> None:
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=increment_many, args=(PG_URL, "s", "counter", TIMES)) for _ in range(PROCESSES)]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join(timeout=200)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join()
    assert [c.exitcode for c in children] == [0] * PROCESSES
    assert await pg.get("s", "counter") == {"n": PROCESSES * TIMES}
