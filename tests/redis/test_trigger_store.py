"""The Redis trigger store (SPEC §11, tagged layout), what the contract suite cannot see: its keys and their
slot, exclusive leases under concurrent workers, the server clock, fencing, atomic retries, exact values."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from motia_state import Change, StateBackendError, StateManager
from motia_state.backends.redis import RedisAdapter, scripts
from motia_state.backends.redis.triggers import RedisTriggerStore
from motia_state.testing.helpers import assert_same
from motia_state.triggers import PARTITIONS
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis

REGISTRY = b"motia:state:__triggers__"


def store_of(state: StateManager) -> RedisTriggerStore:
    assert isinstance(state.adapter, RedisAdapter)
    return state.adapter.trigger_store()


def change(revision: int, key: str = "k", value: Any = 1) -> Change:
    return Change(revision, "created", "s", key, None, value, datetime.now(UTC))


@pytest.fixture
async def store(state: StateManager) -> RedisTriggerStore:
    return store_of(state)


@pytest.fixture
async def others(raw: aioredis.Redis) -> AsyncIterator[list[StateManager]]:
    """Three more managers on the test db, each with its own adapter and pool (other worker processes)."""
    managers = [StateManager.from_url(REDIS_URL) for _ in range(3)]
    try:
        yield managers
    finally:
        for m in managers:
            await m.close()


async def all_keys(raw: aioredis.Redis) -> set[bytes]:
    return {k async for k in raw.scan_iter(count=1000)}


# --- the layout ----------------------------------------------------------------------------------------


def test_the_trigger_scripts_are_loaded_on_noscript() -> None:
    for script in [v for k, v in vars(scripts).items() if k.startswith("TRIGGER_")]:
        assert script in scripts.SCRIPTS


async def test_a_store_writes_nothing_until_used(state: StateManager, raw: aioredis.Redis) -> None:
    await state.connect()
    assert store_of(state) is store_of(state)  # one per adapter
    assert await all_keys(raw) == set()
    motia = StateManager.from_url(REDIS_URL + "?layout=motia")
    assert not hasattr(motia.adapter, "trigger_store")  # the motia layout keeps nothing of its own
    await motia.close()


@pytest.mark.parametrize(
    ("name", "tag"), [("t", "t"), ("a}b", "a%7Db"), ("100%", "100%25"), ("x{y é🙂:*", "x{y é🙂:*")]
)
async def test_every_key_of_a_trigger_is_in_one_slot(
    store: RedisTriggerStore, raw: aioredis.Redis, name: str, tag: str
) -> None:
    await store.register(name, 3, PARTITIONS)
    await store.acquire(name, "w1", 30)
    assert await store.commit(name, "w1", 0, 5, [7], 1, 1, 30)
    await store.park(name, change(4), "E: x", 1)
    await store.park(name, change(6), "E: y", 1)
    assert await store.request_retry(name) == 2
    assert len(await store.take_retries(name, 1)) == 1  # one flag left, so the retry set exists
    await store.status()
    base = f"motia:state:{{__trigger__:{tag}}}#".encode()
    keys = {base + part for part in (b"meta", b"parts", b"workers", b"parked", b"retry")}
    assert await all_keys(raw) == keys | {REGISTRY}
    assert {key_slot(k) for k in keys} == {key_slot(f"{{__trigger__:{tag}}}".encode())}
    assert await raw.smembers(REGISTRY) == {name.encode()}
    assert await raw.type(base + b"meta") == b"hash" and await raw.type(base + b"workers") == b"zset"
    assert await raw.hget(base + b"parts", "0:position") == b"5"
    assert await raw.hget(base + b"parts", "0:done") == b"7"
    assert await raw.hget(base + b"parts", "0:owner") == b"w1"


async def test_a_scope_named_like_a_trigger_does_not_collide(state: StateManager, store: RedisTriggerStore) -> None:
    for key in ("meta", "parts", "workers", "parked", "retry", "changes"):
        await state.set("__trigger__:t", key, key)
    await store.register("t", 0, PARTITIONS)
    assert len(await store.acquire("t", "w", 30)) == PARTITIONS
    await store.park("t", change(1), "E", 1)
    assert await state.get("__trigger__:t", "meta") == "meta"
    assert sorted(await state.keys("__trigger__:t")) == ["changes", "meta", "parked", "parts", "retry", "workers"]
    [status] = await store.status()
    assert status.name == "t" and len(status.parked) == 1


# --- leases --------------------------------------------------------------------------------------------


async def test_concurrent_registers_keep_one_start(others: list[StateManager]) -> None:
    stores = [store_of(m) for m in others]
    starts = await asyncio.gather(*(s.register("t", i, PARTITIONS) for i, s in enumerate(stores * 5)))
    assert len(set(starts)) == 1


async def test_concurrent_workers_never_hold_one_partition_at_once(others: list[StateManager]) -> None:
    stores = [store_of(m) for m in others]
    await stores[0].register("t", 0, PARTITIONS)
    holder: dict[int, str] = {}
    held: dict[str, set[int]] = {}
    rng = random.Random(7)

    async def worker(w: str, store: RedisTriggerStore, rounds: int) -> None:
        for i in range(rounds):
            # A partition counts as held from an acquire's reply until the next call: between them no
            # other worker may get it (the lease is long; nothing runs out during the test).
            for p in held.pop(w, set()):
                del holder[p]
            if i % 17 == 16:
                await store.release("t", w)
                continue
            mine = {c.partition for c in await store.acquire("t", w, 10)}
            for p in mine:
                assert p not in holder, f"partition {p} held by {holder[p]} and {w}"
                holder[p] = w
            held[w] = mine
            await asyncio.sleep(rng.random() * 0.003)

    workers = [worker(f"w{i}", stores[i % len(stores)], 150) for i in range(5)]
    await asyncio.gather(*workers)
    # Then two workers leave: the three left settle on their fair shares, ceil(16 / 3) = 6 at most.
    for i in (3, 4):
        await stores[0].release("t", f"w{i}")
    for _ in range(3):
        shares = [len(await s.acquire("t", f"w{i}", 10)) for i, s in enumerate(stores)]
    assert sorted(shares) == [4, 6, 6]


async def test_leases_run_on_the_server_clock(
    store: RedisTriggerStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.register("t", 0, PARTITIONS)
    assert len(await store.acquire("t", "a", 0.4)) == PARTITIONS
    seconds, micros = await raw.time()
    until = int(await raw.hget(b"motia:state:{__trigger__:t}#parts", "0:until") or 0)
    assert abs(until - (seconds * 1000 + micros // 1000 + 400)) < 100
    # A client clock a day ahead changes nothing: a's lease is still live for b.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400)
    assert await store.acquire("t", "b", 30) == []
    monkeypatch.undo()
    await asyncio.sleep(0.6)
    assert not await store.commit("t", "a", 0, 1, [], 1, 0, 30)  # run out, though nobody took it yet
    assert len(await store.acquire("t", "b", 30)) == PARTITIONS  # a's lease ran out on the server
    [status] = await store.status()
    assert status.owners == ("b",)  # a's heartbeat too


async def test_a_stale_owners_commit_is_rejected(store: RedisTriggerStore, raw: aioredis.Redis) -> None:
    parts = b"motia:state:{__trigger__:t}#parts"
    await store.register("t", 0, PARTITIONS)
    await store.acquire("t", "a", 30)
    await store.acquire("t", "b", 30)
    surplus = [c.partition for c in await store.acquire("t", "a", 30) if c.surplus]
    await store.release("t", "a", surplus)  # a hands its surplus back (the engine does once it is drained)
    kept = {c.partition for c in await store.acquire("t", "a", 30)}
    given = {c.partition for c in await store.acquire("t", "b", 30)}
    assert len(kept) == len(given) == PARTITIONS // 2 and not kept & given
    lost = min(given)
    assert not await store.commit("t", "a", lost, 9, [11], 3, 2, 30)  # no longer a's
    assert await raw.hget(parts, f"{lost}:position") == b"0"
    assert await store.commit("t", "b", lost, 9, [11], 3, 2, 30)
    assert await store.commit("t", "a", min(kept), 4, [], 1, 0, 30)
    assert not await store.commit("t", "a", PARTITIONS, 4, [], 1, 0, 30)  # no such partition
    await store.release("t", "a")
    assert not await store.commit("t", "a", min(kept), 8, [], 1, 0, 30)  # given back
    [status] = await store.status()
    assert status.positions[lost] == 9 and status.positions[min(kept)] == 4
    assert (status.handled, status.skipped) == (4, 2)  # only the matched commits counted
    assert status.owners == ("b",)
    claims = {c.partition: c for c in await store.acquire("t", "b", 30)}
    assert set(claims) == set(range(PARTITIONS))
    assert (claims[lost].position, claims[lost].done) == (9, frozenset({11}))


async def test_a_trigger_that_is_not_registered(store: RedisTriggerStore) -> None:
    await store.register("other", 0, PARTITIONS)
    with pytest.raises(StateBackendError, match="not registered"):
        await store.acquire("t", "a", 30)
    assert not await store.commit("t", "a", 0, 1, [], 0, 0, 30)
    await store.release("t", "a")
    assert await store.take_retries("t", 10) == []
    assert await store.request_retry("t") == 0
    await store.unpark("t", 1)
    assert [s.name for s in await store.status()] == ["other"]


async def test_a_foreign_value_is_a_backend_error(store: RedisTriggerStore, raw: aioredis.Redis) -> None:
    await raw.set(b"motia:state:{__trigger__:t}#meta", "not a hash")
    with pytest.raises(StateBackendError, match="another type"):
        await store.register("t", 0, PARTITIONS)
    await raw.delete(b"motia:state:{__trigger__:t}#meta")
    await store.register("t", 0, PARTITIONS)
    await raw.hset(b"motia:state:{__trigger__:t}#parked", "5", "{not json")
    with pytest.raises(StateBackendError, match="unreadable"):
        await store.status()


# --- parked changes ------------------------------------------------------------------------------------


async def test_concurrent_take_retries_never_return_a_change_twice(others: list[StateManager]) -> None:
    stores = [store_of(m) for m in others]
    await stores[0].register("t", 0, PARTITIONS)
    await asyncio.gather(*(stores[r % 3].park("t", change(r, f"k{r}"), "E", 5) for r in range(1, 301)))
    assert await stores[1].request_retry("t") == 300
    taken: list[int] = []

    async def take(store: RedisTriggerStore) -> None:
        while batch := await store.take_retries("t", 7):
            assert all(p.retry for p in batch)
            taken.extend(p.change.revision for p in batch)

    await asyncio.gather(*(take(stores[i % 3]) for i in range(9)))
    assert sorted(taken) == list(range(1, 301))  # each once
    [status] = await stores[2].status()
    assert len(status.parked) == 300 and not any(p.retry for p in status.parked)
    assert [p.change.revision for p in status.parked] == list(range(1, 301))  # in revision order, not text order


async def test_take_retries_goes_by_revision_and_parking_again_clears_the_flag(store: RedisTriggerStore) -> None:
    await store.register("t", 0, PARTITIONS)
    for r in (30, 4, 200, 11):
        await store.park("t", change(r), "E", 1)
    assert await store.request_retry("t") == 4
    await store.park("t", change(11), "E again", 2)  # a retry that failed: parked anew, not flagged
    assert [p.change.revision for p in await store.take_retries("t", 2)] == [4, 30]
    [status] = await store.status()
    assert [(p.change.revision, p.retry) for p in status.parked] == [(4, False), (11, False), (30, False), (200, True)]
    await store.unpark("t", 200)
    assert await store.take_retries("t", 10) == []


async def test_parked_changes_keep_their_values_exactly(store: RedisTriggerStore, raw: aioredis.Redis) -> None:
    await store.register("t", 0, PARTITIONS)
    new = {
        "big": 2**70,
        "neg": -(2**80) - 1,
        "one": 1.0,
        "tenth": 0.1,
        "huge": 1e300,
        "empty": {},
        "none": [],
        "null": None,
        "text": 'é\u2028🙂"\\',
        "nested": [{"a": [1, 1.0, True, False]}],
    }
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    parked = Change(77, "updated", "scope é:{x}", "key 🙂", 2**64 + 1, new, at)
    await store.park("t", parked, "ValueError: bad \ud800 text\nline two", 5)
    text = await raw.hget(b"motia:state:{__trigger__:t}#parked", "77")
    assert text is not None
    assert b"1180591620717411303424" in text and b'"one":1.0' in text
    json.loads(text)  # plain JSON, as redis-cli shows it
    seconds, _ = await raw.time()
    [status] = await store.status()
    [got] = status.parked
    assert_same(got.change.new_value, new)
    assert_same(got.change.old_value, 2**64 + 1)
    assert (got.change.revision, got.change.event, got.change.scope, got.change.key) == (
        77,
        "updated",
        "scope é:{x}",
        "key 🙂",
    )
    assert got.change.at == at
    assert (got.trigger, got.error, got.attempts, got.retry) == ("t", "ValueError: bad \ud800 text\nline two", 5, False)
    assert abs(got.parked_at - datetime.fromtimestamp(seconds, UTC)) < timedelta(seconds=2)  # the server's clock
    await store.request_retry("t")
    [again] = await store.take_retries("t", 1)
    assert_same(again.change.new_value, new)


async def test_status_lists_every_trigger_by_name(store: RedisTriggerStore) -> None:
    for name in ("b", "a", "c\ud800"):  # a lone surrogate in a name passes through, as bytes
        await store.register(name, 5, PARTITIONS)
    await store.acquire("a", "w2", 30)
    await store.acquire("a", "w1", 30)
    statuses = await store.status()
    assert [s.name for s in statuses] == ["a", "b", "c\ud800"]
    assert statuses[0].owners == ("w1", "w2") and statuses[1].owners == ()
    assert all(s.positions == (5,) * PARTITIONS for s in statuses)
