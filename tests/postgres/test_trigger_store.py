"""The Postgres trigger store (SPEC §11) where the contract suite cannot look: concurrent acquirers on two
pools, leases on the database clock, fencing of a stale owner, concurrent takers of retries, the tables.

Each test uses trigger names of its own on the shared test database, and deletes their rows afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from motia_state import Change, StateBackendError, StateManager
from motia_state.backends.postgres import PostgresAdapter
from motia_state.backends.postgres.triggers import PostgresTriggerStore
from motia_state.sql import TRIGGER_TABLES
from motia_state.triggers import PARTITIONS
from tests.conftest import ensure_pg_database
from tests.services import PG_URL, require

pytestmark = pytest.mark.postgres


@pytest.fixture
def name() -> str:
    """A trigger name no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def managers(name: str) -> AsyncIterator[list[StateManager]]:
    """Two managers on the test database: two adapters, two pools, as two worker processes have."""
    require("postgres")
    await ensure_pg_database()
    states = [StateManager.from_url(PG_URL), StateManager.from_url(PG_URL)]
    try:
        for s in states:
            await s.connect()
        yield states
    finally:
        for s in states:
            await s.close()


@pytest.fixture
def stores(managers: list[StateManager]) -> list[PostgresTriggerStore]:
    """The trigger store of each manager."""
    found = []
    for s in managers:
        assert isinstance(s.adapter, PostgresAdapter)
        store = s.adapter.trigger_store()
        assert store is s.adapter.trigger_store()  # one per adapter
        found.append(store)
    return found


@pytest.fixture
async def sql(managers: list[StateManager], name: str) -> AsyncIterator[Any]:
    """A plain asyncpg pool on the test database (concurrent checks); the test's rows go afterwards."""
    import asyncpg  # type: ignore[import-untyped]

    pool = await asyncpg.create_pool(PG_URL, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        for table in TRIGGER_TABLES:
            await pool.execute(f"DELETE FROM {table} WHERE name LIKE $1", name + "%")
        await pool.close()


def change(revision: int, key: str = "k") -> Change:
    return Change(revision, "created", "s", key, None, {"n": revision}, datetime.now(UTC))


async def test_concurrent_acquirers_on_two_pools_never_hold_one_partition(
    stores: list[PostgresTriggerStore], sql: Any, name: str
) -> None:
    await asyncio.gather(*(s.register(name, 0, PARTITIONS) for s in stores for _ in range(3)))
    owners = [(stores[i % 2], f"w{i}") for i in range(5)]
    # (partition, owner, from, to): the owner surely holds the partition between the end of an acquire that
    # returned it and the start of its next one (leases are long: only the owner's own acquire gives back).
    holds: list[tuple[int, str, float, float]] = []
    table_errors: list[str] = []

    async def worker(store: PostgresTriggerStore, owner: str, rounds: int) -> None:
        rng = random.Random(owner)
        held: set[int] = set()
        ended = 0.0
        for i in range(rounds):
            started = time.monotonic()
            holds.extend((p, owner, ended, started) for p in held)
            if owner == "w4" and i % 10 == 5:  # one worker leaves and comes back: partitions move more
                await store.release(name, owner)
                held = set()
            claims = await store.acquire(name, owner, 30)
            ended = time.monotonic()
            held = {c.partition for c in claims}
            assert len(held) == len(claims)
            if held:
                rows = await sql.fetch(
                    "SELECT partition, owner, lease_until > now() FROM motia_state_trigger_partitions"
                    " WHERE name = $1 AND partition = ANY($2::int[])",
                    name,
                    sorted(held),
                )
                table_errors.extend(f"{owner} got {r[0]}, the table says {r[1]}" for r in rows if r[1] != owner)
                table_errors.extend(f"{owner} got {r[0]} with an expired lease" for r in rows if not r[2])
            surplus = [c.partition for c in claims if c.surplus]
            if surplus:  # handed back at once, as the engine does once nothing of them is in flight
                await store.release(name, owner, surplus)
                holds.extend((p, owner, ended, time.monotonic()) for p in surplus)
                held -= set(surplus)
                ended = time.monotonic()
            await asyncio.sleep(rng.random() * 0.01)
        holds.extend((p, owner, ended, time.monotonic()) for p in held)

    await asyncio.gather(*(worker(s, o, 40) for s, o in owners))
    assert table_errors == []
    by_partition: dict[int, list[tuple[str, float, float]]] = {}
    for p, owner, start, end in holds:
        by_partition.setdefault(p, []).append((owner, start, end))
    for p, spans in by_partition.items():
        spans.sort(key=lambda s: s[1])
        for (o1, _, end1), (o2, start2, _) in itertools.pairwise(spans):
            assert o1 == o2 or start2 >= end1, f"partition {p} held by {o1} and {o2} at once"
    # Settled: every round gives each of the five its share, and all of them are held.
    for _ in range(3):
        results = []
        for s, o in owners:
            claims = await s.acquire(name, o, 30)
            await s.release(name, o, [c.partition for c in claims if c.surplus])
            results.append([c for c in claims if not c.surplus])
    counts = sorted(len(r) for r in results)
    assert sum(counts) == PARTITIONS and counts[-1] <= -(-PARTITIONS // len(owners))
    assert len({c.partition for r in results for c in r}) == PARTITIONS
    status = {s.name: s for s in await stores[0].status()}[name]
    assert set(status.owners) == {o for _, o in owners}


async def test_a_lease_runs_out_on_the_database_clock(
    stores: list[PostgresTriggerStore], sql: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = stores
    await a.register(name, 0, PARTITIONS)
    # The client's clock is an hour off: a store that read it would see the lease as long expired.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)
    assert len(await a.acquire(name, "a", 1.5)) == PARTITIONS
    left = await sql.fetch(
        "SELECT extract(epoch FROM lease_until - now()) FROM motia_state_trigger_partitions WHERE name = $1", name
    )
    assert len(left) == PARTITIONS and all(0.5 < float(r[0]) <= 1.5 for r in left)
    alive = await sql.fetchval(
        "SELECT extract(epoch FROM alive_until - now()) FROM motia_state_trigger_workers WHERE name = $1", name
    )
    assert 0.5 < float(alive) <= 1.5
    assert await b.acquire(name, "b", 30) == []  # a's lease is live by the database's clock
    assert await a.commit(name, "a", 0, 5, [], 1, 0, 1.5)
    await asyncio.sleep(1.7)
    taken = await b.acquire(name, "b", 30)
    assert len(taken) == PARTITIONS  # ran out: a's heartbeat as well (b's share is all of them)
    assert {c.partition: c.position for c in taken}[0] == 5
    [status] = [s for s in await a.status() if s.name == name]
    assert status.owners == ("b",)


async def test_a_stale_owner_cannot_commit(stores: list[PostgresTriggerStore], sql: Any, name: str) -> None:
    a, b = stores
    await a.register(name, 0, PARTITIONS)
    await a.acquire(name, "a", 0.4)
    assert await a.commit(name, "a", 2, 10, [12], 3, 1, 0.4)
    await asyncio.sleep(0.6)
    # Still the owner in the table, but its lease ran out: the commit is refused, nothing changes.
    assert (
        await sql.fetchval("SELECT owner FROM motia_state_trigger_partitions WHERE name = $1 AND partition = 2", name)
        == "a"
    )
    assert not await a.commit(name, "a", 2, 20, [], 5, 5, 30)
    row = await sql.fetchrow(
        "SELECT position, done::text FROM motia_state_trigger_partitions WHERE name = $1 AND partition = 2", name
    )
    assert (row[0], row[1]) == (10, "[12]")
    assert len(await b.acquire(name, "b", 30)) == PARTITIONS
    # A commit racing the new holder's own: only b's lands, however many times a tries.
    results = await asyncio.gather(
        *(a.commit(name, "a", 2, 30 + i, [], 1, 0, 30) for i in range(10)), b.commit(name, "b", 2, 11, [], 1, 0, 30)
    )
    assert results == [False] * 10 + [True]
    assert (
        await sql.fetchval(
            "SELECT position FROM motia_state_trigger_partitions WHERE name = $1 AND partition = 2", name
        )
        == 11
    )
    [status] = [s for s in await a.status() if s.name == name]
    assert (status.handled, status.skipped) == (4, 1)  # the refused commits added nothing


async def test_concurrent_takers_never_get_one_parked_change_twice(
    stores: list[PostgresTriggerStore], sql: Any, name: str
) -> None:
    await stores[0].register(name, 0, PARTITIONS)
    total = 300
    await asyncio.gather(*(stores[r % 2].park(name, change(r, f"k{r % 7}"), "E: x", 5) for r in range(1, total + 1)))
    assert await stores[1].request_retry(name) == total
    taken: list[int] = []

    async def taker(store: PostgresTriggerStore) -> None:
        while True:
            got = await store.take_retries(name, 7)
            if not got:
                return
            assert all(p.trigger == name and p.retry for p in got)
            assert [p.change.revision for p in got] == sorted(p.change.revision for p in got)
            taken.extend(p.change.revision for p in got)
            await asyncio.sleep(0)

    await asyncio.gather(*(taker(stores[i % 2]) for i in range(20)))
    assert len(taken) == total and set(taken) == set(range(1, total + 1))
    assert await sql.fetchval("SELECT count(*) FROM motia_state_trigger_parked WHERE name = $1 AND retry", name) == 0
    assert await sql.fetchval("SELECT count(*) FROM motia_state_trigger_parked WHERE name = $1", name) == total


async def test_concurrent_registrations_agree_on_the_start(stores: list[PostgresTriggerStore], name: str) -> None:
    starts = await asyncio.gather(*(stores[i % 2].register(name, 100 + i, PARTITIONS) for i in range(12)))
    assert len(set(starts)) == 1 and starts[0] in range(100, 112)
    [status] = [s for s in await stores[0].status() if s.name == name]
    assert status.positions == (starts[0],) * PARTITIONS


async def test_release_gives_back_at_once(stores: list[PostgresTriggerStore], sql: Any, name: str) -> None:
    a, b = stores
    await a.register(name, 0, PARTITIONS)
    await a.acquire(name, "a", 30)
    await a.release(name, "a")
    assert (
        await sql.fetchval(
            "SELECT count(*) FROM motia_state_trigger_partitions WHERE name = $1 AND owner IS NOT NULL", name
        )
        == 0
    )
    assert await sql.fetchval("SELECT count(*) FROM motia_state_trigger_workers WHERE name = $1", name) == 0
    assert len(await b.acquire(name, "b", 30)) == PARTITIONS


async def test_driver_errors_come_out_as_state_backend_errors(
    stores: list[PostgresTriggerStore], sql: Any, name: str
) -> None:
    a = stores[0]
    await a.register(name, 0, PARTITIONS)
    # A statement the server refuses, in the one-statement path and in the transaction path.
    with pytest.raises(StateBackendError):
        await a.register(name + "-bad", 0, -(2**40))
    with pytest.raises(StateBackendError):
        await a.acquire(name, "x" * 10 + "\0", 30)
    with pytest.raises(StateBackendError):
        await a.park(name, Change(1, "created", "s", "k\0", None, 1, datetime.now(UTC)), "E", 1)
    await a.acquire(name, "a", 30)  # the pool is fine afterwards
