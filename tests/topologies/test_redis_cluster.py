"""SPEC §12: Redis Cluster (``redis+cluster://h1:7000,h2:7001/``), a 3-master + 3-replica cluster from
``.ci/services/redis_cluster.sh``: the operations over scopes on every master, ``watch(scope)``, a trigger with
``scope=``, and the two calls a cluster may refuse (``watch()`` of all scopes, ``revision()`` without a scope).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from motia_state import Change, StateConfigError, StateManager
from tests.topologies.redis import cluster_client, eventually, make_redis_cluster

pytestmark = pytest.mark.redis

WITHIN = 20.0  # seconds: a bound for a hung call, not a measurement
PREFIX = "motia:state:"


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateManager]:
    store = await make_redis_cluster(tmp_path)
    try:
        yield store
    finally:
        await store.close()


async def masters_by_slot() -> Callable[[int], str]:
    """A function from a slot to "host:port" of the master serving it (from CLUSTER SLOTS)."""
    client = cluster_client()
    try:
        await client.initialize()
        ranges = [(int(s), int(e), f"{n.host}:{n.port}") for (s, e), n in _primary_ranges(client).items()]
    finally:
        await client.aclose()

    def master_of(slot: int) -> str:
        for start, end, node in ranges:
            if start <= slot <= end:
                return node
        raise AssertionError(f"slot {slot} is served by no master: {ranges}")

    return master_of


def _primary_ranges(client: Any) -> dict[tuple[int, int], Any]:
    """{(first slot, last slot): primary node} from the client's slot table."""
    out: dict[tuple[int, int], Any] = {}
    start = 0
    current = None
    for slot in range(16384):
        node = client.nodes_manager.slots_cache[slot][0]
        if node is not current:
            if current is not None:
                out[(start, slot - 1)] = current
            start, current = slot, node
    out[(start, 16383)] = current
    return out


def entry_slot(scope: str) -> int:
    return key_slot(f"{PREFIX}{{{scope}}}:k".encode())


async def test_operations_over_scopes_on_every_master(state: StateManager) -> None:
    master_of = await masters_by_slot()
    scopes = [f"trace-{i}" for i in range(48)]
    masters = {master_of(entry_slot(s)) for s in scopes}
    slots = {entry_slot(s) for s in scopes}
    assert len(masters) == 3 and len(slots) > 40, (masters, len(slots))  # the test spreads as it should

    for i, scope in enumerate(scopes):
        assert (await state.set(scope, "booking", {"i": i, "status": "pending"})).old_value is None
        await state.set_many(scope, {f"step{j}": j for j in range(3)})
    for i, scope in enumerate(scopes):
        assert await state.get(scope, "booking") == {"i": i, "status": "pending"}
        result = await state.update(scope, "booking", [{"type": "set", "path": "status", "value": "confirmed"}])
        assert result.new_value == {"i": i, "status": "confirmed"}
        assert sorted(await state.keys(scope)) == ["booking", "step0", "step1", "step2"]
        assert await state.get_many(scope, ["step1", "nope"]) == {"step1": 1}
        assert len(await state.list(scope)) == 4
    assert set(scopes) <= set(await state.list_groups())

    # The entries are where SPEC §7 says, as JSON text, readable with any cluster client.
    client = cluster_client()
    try:
        assert await client.get(f"{PREFIX}{{trace-7}}:step2") == b"2"
        assert await client.get(f"{PREFIX}{{trace-7}}:booking") is not None
    finally:
        await client.aclose()

    for scope in scopes[::2]:
        assert await state.delete(scope, "step0") == 0
        assert await state.clear(scope) == 3
        assert await state.keys(scope) == []
    for scope in scopes[1::2]:
        assert await state.delete_many(scope, ["step0", "step1", "nope"]) == 2
        assert sorted(await state.keys(scope)) == ["booking", "step2"]
    remaining = set(await state.list_groups())
    assert set(scopes[1::2]) <= remaining and not set(scopes[::2]) & remaining


async def test_ttl_and_cleanup_on_the_cluster(state: StateManager) -> None:
    for i in range(12):
        await state.set(f"ttl-{i}", "short", i, ttl=0.2)
        await state.set(f"ttl-{i}", "long", i, ttl=600)
    ttl = await state.ttl("ttl-3", "long")
    assert ttl is not None and 590 < ttl <= 600
    await asyncio.sleep(0.5)
    assert await state.get("ttl-3", "short") is None
    await state.cleanup()
    assert all([await state.keys(f"ttl-{i}") == ["long"] for i in range(12)])


async def test_watch_scope_on_the_cluster(state: StateManager) -> None:
    await state.set("bookings", "b1", {"n": 0})
    start = await state.revision("bookings")
    async with state.watch("bookings") as changes:
        for n in range(1, 6):
            await state.set("other-scope", f"x{n}", n)  # another slot: not delivered
            await state.set("bookings", "b1", {"n": n})
        await state.delete("bookings", "b1")
        got = [await asyncio.wait_for(anext(changes), WITHIN) for _ in range(6)]
    assert [c.scope for c in got] == ["bookings"] * 6
    assert [c.event for c in got] == ["updated"] * 5 + ["deleted"]
    assert [c.new_value for c in got] == [{"n": n} for n in range(1, 6)] + [None]
    assert [c.old_value for c in got] == [{"n": n} for n in range(6)]
    revisions = [c.revision for c in got]
    assert revisions == sorted(set(revisions)) and revisions[0] > start
    assert await state.revision("bookings") >= revisions[-1]

    # Resumed with since=: the same changes again, then live ones.
    async with state.watch("bookings", since=revisions[2]) as again:
        replay = [await asyncio.wait_for(anext(again), WITHIN) for _ in range(3)]
        await state.set("bookings", "b2", "new")
        live = await asyncio.wait_for(anext(again), WITHIN)
    assert [c.revision for c in replay] == revisions[3:]
    assert (live.event, live.key, live.new_value) == ("created", "b2", "new") and live.revision > revisions[-1]

    async with state.watch("bookings", key="b2") as by_key:
        await state.set("bookings", "b3", 1)
        await state.set("bookings", "b2", "newer")
        one = await asyncio.wait_for(anext(by_key), WITHIN)
    assert (one.key, one.old_value, one.new_value) == ("b2", "new", "newer")


async def test_watch_of_every_scope_is_refused_on_a_cluster(state: StateManager) -> None:
    with pytest.raises(StateConfigError) as info:
        async with state.watch() as changes:
            await state.set("s", "k", 1)
            await asyncio.wait_for(anext(changes), WITHIN)
    assert "cluster" in str(info.value).lower(), str(info.value)
    # A scope's watch still works on the same manager.
    async with state.watch("s") as changes:
        await state.set("s", "k", 2)
        assert (await asyncio.wait_for(anext(changes), WITHIN)).new_value == 2


async def test_revision_without_a_scope_is_refused_on_a_cluster(state: StateManager) -> None:
    await state.set("s", "k", 1)
    with pytest.raises(StateConfigError) as info:
        await state.revision()
    assert "cluster" in str(info.value).lower(), str(info.value)
    first = await state.revision("s")
    await state.set("s", "k", 2)
    assert await state.revision("s") > first


async def test_a_trigger_with_a_scope_runs_on_the_cluster(state: StateManager) -> None:
    handled: list[Change] = []

    @state.on_change("cluster-jobs", scope="jobs", events=("created", "updated"))
    async def job(change: Change) -> None:
        handled.append(change)

    await state.connect()
    store = state.adapter.trigger_store()  # type: ignore[attr-defined]
    task = asyncio.ensure_future(state.run_triggers())
    try:

        async def registered() -> bool:  # a new trigger starts at the revision current when registered
            if task.done():  # run_triggers() failed (or returned): say why
                raise AssertionError(f"run_triggers() ended: {task.exception()!r}")
            return any(s.name == "cluster-jobs" and s.owners for s in await store.status())

        await eventually(registered, "the trigger was registered and its partitions taken")
        await asyncio.sleep(0.2)
        for i in range(10):
            await state.set("jobs", f"j{i % 4}", {"i": i})
            await state.set("not-jobs", f"j{i}", {"i": i})
        await state.delete("jobs", "j0")  # not a matching event
        await eventually(lambda: len(handled) >= 10, f"10 changes handled (got {len(handled)})")
        await asyncio.sleep(0.3)  # nothing more comes
    finally:
        task.cancel()
        [ended] = await asyncio.gather(task, return_exceptions=True)
    assert ended is None or isinstance(ended, asyncio.CancelledError), f"run_triggers() failed: {ended!r}"
    assert len(handled) == 10, [(c.scope, c.key, c.event) for c in handled]
    assert {c.scope for c in handled} == {"jobs"}
    assert sorted(c.new_value["i"] for c in handled) == list(range(10))
    for key in ("j0", "j1", "j2", "j3"):
        order = [c.new_value["i"] for c in handled if c.key == key]
        assert order == sorted(order), (key, order)
    [status] = [s for s in await store.status() if s.name == "cluster-jobs"]
    assert status.handled == 10 and not status.parked


async def test_a_trigger_without_a_scope_is_refused_on_a_cluster(state: StateManager) -> None:
    async def everything(change: Change) -> None:
        raise AssertionError("a trigger over every scope ran on a cluster")

    with pytest.raises(StateConfigError) as info:
        state.on_change("everything")(everything)
        await asyncio.wait_for(state.run_triggers(), WITHIN)
    assert "scope" in str(info.value), str(info.value)
