"""The Redis adapter's round trips. ``update`` starts from the text this process last wrote, and updates of one
key that queue behind one in flight are written together by one compare-and-swap (``RedisBase.update_entry``);
requests of concurrent tasks share round trips (``Connection._shared``). What a caller sees must not change:
these tests hold both the round trips and the results.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from motia_state import StateBackendError, StateManager, UpdateOpError, ops
from motia_state.backends.redis import connection as redis_connection
from motia_state.backends.redis import scripts
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis

INC = [ops.increment("n")]


@contextmanager
def commands_sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Every command the adapters send to Redis inside the block."""
    sent: list[tuple[Any, ...]] = []
    original = redis_connection.Connection._execute

    async def record(self: redis_connection.Connection, client: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        sent.extend(commands)
        return await original(self, client, commands)

    with monkeypatch.context() as patch:
        patch.setattr(redis_connection.Connection, "_execute", record)
        yield sent


def _cas(sent: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    shas = {scripts.CAS.sha, scripts.CHAIN.sha, scripts.MOTIA_CAS.sha}
    return [c for c in sent if c[0] == "EVALSHA" and c[1] in shas]


@pytest.fixture(params=["tagged", "motia"])
async def pair(request: pytest.FixtureRequest, raw: aioredis.Redis) -> AsyncIterator[tuple[StateManager, StateManager]]:
    """Two stores on the same db, as two processes would be: each remembers only its own writes."""
    options: dict[str, Any] = {"layout": "motia"} if request.param == "motia" else {}
    one, two = StateManager.from_url(REDIS_URL, **options), StateManager.from_url(REDIS_URL, **options)
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


async def test_an_update_after_a_write_of_this_process_is_one_round_trip(
    pair: tuple[StateManager, StateManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _ = pair
    await state.set("s", "k", {"n": 1})
    await state.update("s", "fresh", INC)
    with commands_sent(monkeypatch) as sent:
        assert (await state.update("s", "k", INC)).new_value == {"n": 2}
        assert (await state.update("s", "k", INC)).new_value == {"n": 3}
        assert (await state.update("s", "fresh", INC)).new_value == {"n": 2}
    assert [c[0] for c in sent] == ["EVALSHA"] * 3


async def test_a_write_by_another_process_is_seen_not_overwritten(pair: tuple[StateManager, StateManager]) -> None:
    state, other = pair
    assert (await state.update("s", "k", INC)).new_value == {"n": 1}
    await other.set("s", "k", {"n": 100, "by": "other"})
    result = await state.update("s", "k", INC)
    assert result.old_value == {"n": 100, "by": "other"}
    assert result.new_value == {"n": 101, "by": "other"}
    await other.delete("s", "k")
    result = await state.update("s", "k", INC)
    assert (result.old_value, result.new_value) == (None, {"n": 1})


async def test_an_update_refused_on_the_remembered_text_is_decided_on_the_current_one(
    pair: tuple[StateManager, StateManager],
) -> None:
    state, other = pair
    await state.set("s", "k", {"n": "a string: increment refuses it"})
    await other.set("s", "k", {"n": 1})
    assert (await state.update("s", "k", INC)).new_value == {"n": 2}
    await other.set("s", "k", {"n": "a string again"})
    with pytest.raises(UpdateOpError):
        await state.update("s", "k", INC)
    assert await other.get("s", "k") == {"n": "a string again"}


async def test_updates_of_one_key_at_once_share_a_few_compare_and_swaps(
    pair: tuple[StateManager, StateManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _ = pair
    await state.connect()
    with commands_sent(monkeypatch) as sent:
        results = await asyncio.gather(*(state.update("s", "hot", INC) for _ in range(500)))
    assert sorted(r.new_value["n"] for r in results) == list(range(1, 501))
    assert len(_cas(sent)) <= 10  # the first alone, the others in batches of at most 256 (before: 500+)
    assert await state.get("s", "hot") == {"n": 500}


async def test_two_processes_contending_for_one_key_lose_no_update(pair: tuple[StateManager, StateManager]) -> None:
    one, two = pair

    async def bump(state: StateManager, times: int) -> None:
        await asyncio.gather(*(state.update("s", "hot", INC) for _ in range(times)))

    await asyncio.gather(bump(one, 200), bump(two, 200), bump(one, 100))
    assert await one.get("s", "hot") == {"n": 500}


async def test_a_queued_update_cancelled_by_its_caller_stops_nothing_else(
    pair: tuple[StateManager, StateManager],
) -> None:
    state, _ = pair
    tasks = [asyncio.create_task(state.update("s", "hot", INC)) for _ in range(100)]
    await asyncio.sleep(0)  # all started: one in flight, the others queued behind it
    for task in tasks[10:20]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    finished = [r for r in done if not isinstance(r, BaseException)]
    assert len(finished) == 90
    # A cancelled caller's update is either not made or made whole (its batch was already on its way).
    final = (await state.get("s", "hot"))["n"]
    assert 90 <= final <= 100
    assert sorted(r.new_value["n"] for r in finished) == sorted(set(r.new_value["n"] for r in finished))
    assert (await state.update("s", "hot", INC)).new_value == {"n": final + 1}


async def test_a_queued_update_keeps_its_own_ttl_for_a_new_entry(raw: aioredis.Redis) -> None:
    state = StateManager.from_url(REDIS_URL, ttl=60)
    try:
        await asyncio.gather(*(state.update("s", "new", INC) for _ in range(20)))
        left = await state.ttl("s", "new")
        assert left is not None and 50 < left <= 60
        assert await state.keys("s") == ["new"]
    finally:
        await state.close()


# --- requests of concurrent tasks sharing round trips (Connection._shared) --------------------------------


async def test_concurrent_requests_share_round_trips_and_each_gets_its_own_replies(
    state: StateManager, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await state.set_many("s", {f"k{i}": {"i": i} for i in range(50)})
    await raw.hset("motia:state:{s}:wrong", "f", "v")  # a key of another type: an error reply, for its reader only
    trips: list[int] = []
    original = redis_connection.Connection._on_server

    async def count(pool: Any, commands: Any) -> list[Any]:
        trips.append(len(commands))
        return await original(pool, commands)

    monkeypatch.setattr(redis_connection.Connection, "_on_server", staticmethod(count))
    reads = [state.get("s", f"k{i}") for i in range(50)]
    got = await asyncio.gather(*reads, state.get("s", "wrong"), return_exceptions=True)
    assert got[:50] == [{"i": i} for i in range(50)]
    assert isinstance(got[50], StateBackendError) and "WRONGTYPE" in str(got[50])
    assert len(trips) <= 5 and sum(trips) == 51  # before: 51 round trips, one per request


async def test_a_cancelled_request_leaves_the_shared_connection_in_step(state: StateManager) -> None:
    await state.set_many("s", {f"k{i}": i for i in range(40)})
    tasks = [asyncio.create_task(state.get("s", f"k{i}")) for i in range(40)]
    await asyncio.sleep(0)
    for task in tasks[5:35:3]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r == i for i, r in enumerate(done) if not isinstance(r, BaseException))
    # Every reply was read (those of the cancelled requests too): the next requests get their own.
    assert await asyncio.gather(*(state.get("s", f"k{i}") for i in range(40))) == list(range(40))
