"""Concurrent get/set calls are gathered into batched statements; each caller still gets its own answer."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.backends.postgres import PostgresAdapter
from tests.services import PG_URL

pytestmark = pytest.mark.postgres


def _assert_chain(olds: list[Any], writes: list[Any], final: Any) -> None:
    """Concurrent sets on one key: each write replaced exactly one earlier value (or None), none lost."""
    assert Counter(map(repr, [*olds, final])) == Counter(map(repr, [None, *writes]))


async def test_many_concurrent_gets_return_each_callers_value(pg: StateManager, adapter: PostgresAdapter) -> None:
    await pg.set_many("s", {f"k{i}": {"i": i} for i in range(50)})
    await pg.set("s", "short", 1, ttl=0.001)
    await pg.set("other", "k1", "other scope")
    await asyncio.sleep(0.01)
    keys = [f"k{i}" for i in range(60)] * 3 + ["short"] * 5
    random.Random(1).shuffle(keys)
    results = await asyncio.gather(*(pg.get("s", k) for k in keys))
    for k, got in zip(keys, results, strict=True):
        i = int(k[1:]) if k != "short" else 999
        assert got == ({"i": i} if i < 50 else None), k
    # Callers asking for the same key get distinct objects.
    same = await asyncio.gather(*(pg.get("s", "k1") for _ in range(20)))
    assert len({id(v) for v in same}) == 20
    assert adapter._gets.in_flight == 0 and adapter._gets.pending is None


async def test_concurrent_sets_with_duplicate_keys_chain_old_values(pg: StateManager) -> None:
    writes = {k: [f"{k}-{n}" for n in range(25)] for k in ("a", "b", "c")}
    calls = [(k, v) for k, vs in writes.items() for v in vs]
    random.Random(2).shuffle(calls)
    results = await asyncio.gather(*(pg.set("s", k, v) for k, v in calls))
    for key, values in writes.items():
        olds = [r.old_value for (k, _), r in zip(calls, results, strict=True) if k == key]
        _assert_chain(olds, values, await pg.get("s", key))


async def test_sequential_calls_from_one_task_stay_in_order(pg: StateManager) -> None:
    async def worker(w: int) -> None:
        for n in range(20):
            result = await pg.set("s", f"w{w}", n)
            assert result.old_value == (None if n == 0 else n - 1)
            assert await pg.get("s", f"w{w}") == n

    await asyncio.gather(*(worker(w) for w in range(16)))


async def test_two_stores_racing_on_fresh_keys(pg: StateManager) -> None:
    # Two pools = two sets of connections: the "key created after my snapshot" case happens for real.
    other = StateManager.from_url(PG_URL, migrate="off")
    try:
        calls = [(store, f"k{i % 5}", f"{n}-{i}") for i in range(100) for n, store in enumerate((pg, other))]
        random.Random(3).shuffle(calls)
        results = await asyncio.gather(*(store.set("s", k, v) for store, k, v in calls))
        for key in {k for _, k, _ in calls}:
            olds = [r.old_value for (_, k, _), r in zip(calls, results, strict=True) if k == key]
            values = [v for _, k, v in calls if k == key]
            _assert_chain(olds, values, await pg.get("s", key))
    finally:
        await other.close()


async def test_batched_set_keeps_ttls_per_caller(pg: StateManager) -> None:
    await asyncio.gather(*(pg.set("s", f"k{i}", i, ttl=(100 if i % 2 else None)) for i in range(20)))
    ttls = await asyncio.gather(*(pg.ttl("s", f"k{i}") for i in range(20)))
    for i, left in enumerate(ttls):
        if i % 2:
            assert left is not None and 90 < left <= 100
        else:
            assert left is None


async def test_cancelled_caller_does_not_strand_its_batch(pg: StateManager) -> None:
    await pg.set_many("s", {f"k{i}": i for i in range(30)})
    tasks = [asyncio.ensure_future(pg.get("s", f"k{i}")) for i in range(30)]
    await asyncio.sleep(0)
    for t in tasks[5::7]:
        t.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    for i, (t, result) in enumerate(zip(tasks, done, strict=True)):
        if t.cancelled():
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == i
    assert await pg.get("s", "k29") == 29


async def test_small_pool_under_heavy_concurrency(tmp_path: Any) -> None:
    from tests.conftest import make_postgres

    store = await make_postgres(tmp_path, pool_size=2)
    try:
        adapter = store.adapter
        assert isinstance(adapter, PostgresAdapter)
        assert adapter._pg.pool.get_max_size() == 2 and adapter._pg.pool.get_min_size() == 1
        await asyncio.gather(*(store.set("s", f"k{i % 7}", i) for i in range(200)))
        await asyncio.gather(*(store.update("s", "n", [{"type": "increment", "path": "n"}]) for _ in range(50)))
        got = await asyncio.gather(*(store.get("s", f"k{i}") for i in range(7)))
        assert all(isinstance(v, int) for v in got)
        assert await store.get("s", "n") == {"n": 50}
    finally:
        await store.close()


async def test_one_refused_write_in_a_batch_fails_only_its_caller(pg: StateManager, refuse_boom: None) -> None:
    from motia_state import StateBackendError

    keys = [f"k{i % 6}" for i in range(30)] + ["boom"]
    random.Random(4).shuffle(keys)
    results = await asyncio.gather(*(pg.set("s", k, i) for i, k in enumerate(keys)), return_exceptions=True)
    for k, result in zip(keys, results, strict=True):
        if k == "boom":
            assert isinstance(result, StateBackendError) and "refused by test trigger" in str(result)
        else:
            assert not isinstance(result, BaseException), result
    for key in {k for k in keys if k != "boom"}:
        olds = [r.old_value for k, r in zip(keys, results, strict=True) if k == key]  # type: ignore[union-attr]
        values = [i for i, k in enumerate(keys) if k == key]
        _assert_chain(olds, values, await pg.get("s", key))
    assert await pg.get("s", "boom") is None
