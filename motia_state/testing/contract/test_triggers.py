"""SPEC §11: durable triggers, on every backend: the progress store's rules, then the engine in one process.

The multi-process behaviours (worker processes sharing work, SIGKILL takeover) are tested in the repo's
``tests/triggers``; here one process runs everything, with short leases where expiry matters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from motia_state import Change, StateConfigError, StateManager, StateValueError
from motia_state import triggers as engine
from motia_state.testing.helpers import assert_same, mark_all
from motia_state.triggers import PARTITIONS, TriggerStore

WITHIN = 15.0  # seconds: a bound for a hung test, not a measurement


def store_of(state: StateManager) -> TriggerStore:
    store: TriggerStore = state.adapter.trigger_store()  # type: ignore[attr-defined]
    return store


def change(revision: int, key: str = "k", value: Any = 1) -> Change:
    return Change(revision, "created", "s", key, None, value, datetime.now(UTC))


# --- the store ----------------------------------------------------------------------------------------


async def test_store_register_keeps_the_first_start(state: StateManager) -> None:
    await state.connect()
    store = store_of(state)
    assert await store.register("t", 7, PARTITIONS) == 7
    assert await store.register("t", 99, PARTITIONS) == 7
    [status] = [s for s in await store.status() if s.name == "t"]
    assert status.start_revision == 7 and status.positions == (7,) * PARTITIONS and status.position == 7
    assert (status.handled, status.skipped, status.parked) == (0, 0, ())


async def test_store_shares_partitions_fairly_and_exclusively(state: StateManager) -> None:
    await state.connect()
    store = store_of(state)
    await store.register("t", 0, PARTITIONS)
    first = await store.acquire("t", "a", 30)
    assert sorted(c.partition for c in first) == list(range(PARTITIONS))
    assert not any(c.surplus for c in first)
    assert await store.acquire("t", "b", 30) == []  # all held: b is counted, a is told its surplus next
    again = await store.acquire("t", "a", 30)
    surplus = [c.partition for c in again if c.surplus]
    assert len(again) == PARTITIONS and len(surplus) == PARTITIONS // 2  # renewed, not given back yet
    assert await store.acquire("t", "b", 30) == []  # nothing free until a hands its surplus back
    await store.release("t", "a", surplus)
    a = {c.partition for c in await store.acquire("t", "a", 30)}
    b = {c.partition for c in await store.acquire("t", "b", 30)}
    assert len(a) == len(b) == PARTITIONS // 2 and not a & b
    assert a == set(range(PARTITIONS)) - set(surplus)
    assert {c.partition for c in await store.acquire("t", "a", 30)} == a  # renewing keeps the same ones
    [status] = [s for s in await store.status() if s.name == "t"]
    assert set(status.owners) == {"a", "b"}
    await store.release("t", "b")
    assert {c.partition for c in await store.acquire("t", "a", 30)} == set(range(PARTITIONS))


async def test_store_commit_is_fenced_by_the_lease(state: StateManager) -> None:
    await state.connect()
    store = store_of(state)
    await store.register("t", 0, PARTITIONS)
    await store.acquire("t", "a", 0.3)
    assert await store.commit("t", "a", 3, 10, [12, 15], 2, 1, 0.3)
    assert not await store.commit("t", "b", 3, 11, [], 0, 0, 0.3)  # not b's
    await asyncio.sleep(0.6)
    taken = {c.partition: c for c in await store.acquire("t", "b", 30)}
    assert set(taken) == set(range(PARTITIONS))  # a's lease ran out
    assert (taken[3].position, set(taken[3].done)) == (10, {12, 15})
    assert not await store.commit("t", "a", 3, 20, [], 5, 0, 0.3)  # a lost it
    assert await store.commit("t", "b", 3, 16, [], 1, 0, 30)
    [status] = [s for s in await store.status() if s.name == "t"]
    assert status.positions[3] == 16 and status.position == 0
    assert (status.handled, status.skipped) == (3, 1)


async def test_store_parks_retries_and_unparks(state: StateManager) -> None:
    await state.connect()
    store = store_of(state)
    await store.register("t", 0, PARTITIONS)
    exact = {"big": 2**70, "one": 1.0, "nested": [{}, [], None, "é"]}
    await store.park("t", Change(5, "updated", "s", "k", {"a": 1}, exact, datetime.now(UTC)), "ValueError: x", 5)
    await store.park("t", change(3), "KeyError: y", 5)
    await store.park("t", change(3), "KeyError: z", 6)  # the same revision again: replaced
    [status] = [s for s in await store.status() if s.name == "t"]
    assert [(p.change.revision, p.error, p.attempts, p.retry) for p in status.parked] == [
        (3, "KeyError: z", 6, False),
        (5, "ValueError: x", 5, False),
    ]
    assert_same(status.parked[1].change.new_value, exact)
    assert status.parked[1].change.old_value == {"a": 1} and status.parked[1].change.event == "updated"
    assert await store.take_retries("t", 10) == []
    assert await store.request_retry("t") == 2
    taken = await store.take_retries("t", 10)
    assert sorted(p.change.revision for p in taken) == [3, 5]
    assert await store.take_retries("t", 10) == []  # taken once
    await store.unpark("t", 3)
    [status] = [s for s in await store.status() if s.name == "t"]
    assert [p.change.revision for p in status.parked] == [5]
    assert await store.request_retry("nobody") == 0


async def test_store_keeps_a_parked_changes_traceparent(state: StateManager) -> None:
    """A parked change is a copy: the writer's traceparent goes with it, so a retried handler can link to it."""
    await state.connect()
    store = store_of(state)
    await store.register("t", 0, PARTITIONS)
    traced = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await store.park("t", Change(4, "created", "s", "a", None, 1, datetime.now(UTC), traced), "E: x", 5)
    await store.park("t", change(6), "E: y", 5)  # an untraced write's
    [status] = [s for s in await store.status() if s.name == "t"]
    assert [(p.change.revision, p.change.traceparent) for p in status.parked] == [(4, traced), (6, None)]
    assert await store.request_retry("t") == 2
    taken = sorted(await store.take_retries("t", 10), key=lambda p: p.change.revision)
    assert [(p.change.revision, p.change.traceparent) for p in taken] == [(4, traced), (6, None)]


# --- the engine ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(state: StateManager) -> AsyncIterator[None]:
    await state.connect()
    task = asyncio.ensure_future(state.run_triggers())
    names = {t.name for t in state.triggers}

    async def registered() -> bool:  # and held: a trigger starts at the revision current when registered
        return names <= {s.name for s in await store_of(state).status() if s.owners}

    await eventually(registered)
    await asyncio.sleep(0.1)  # following the feed
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[bool] | bool]) -> None:
    async with asyncio.timeout(WITHIN):
        while True:
            result = check()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.05)


async def test_each_matching_change_is_handled_once_in_key_order(state: StateManager) -> None:
    seen: list[Change] = []
    skipped_scope: list[Change] = []

    @state.on_change("confirm", scope="bookings", events=("created", "updated"),
                     condition=lambda c: (c.new_value or {}).get("status") == "confirmed")  # fmt: skip
    async def confirm(c: Change) -> None:
        seen.append(c)

    @state.on_change("all-other", scope="other")
    def other(c: Change) -> None:  # a plain function works too
        skipped_scope.append(c)

    async with running(state):
        for i in range(10):
            await state.set("bookings", f"b{i % 3}", {"status": "pending", "i": i})
            await state.set("bookings", f"b{i % 3}", {"status": "confirmed", "i": i})
        await state.delete("bookings", "b0")
        await state.set("other", "x", 1)
        await eventually(lambda: len(seen) == 10 and len(skipped_scope) == 1)
        await asyncio.sleep(0.5)
    assert [c.new_value["i"] for c in seen if c.key == "b0"] == [0, 3, 6, 9]
    assert len({c.revision for c in seen}) == 10
    statuses = {s.name: s for s in await store_of(state).status()}
    assert statuses["confirm"].handled == 10
    assert statuses["confirm"].skipped == 11  # the pending writes and the delete: seen, not handled
    assert statuses["all-other"].handled == 1


async def test_one_key_at_a_time_while_other_keys_overlap(state: StateManager) -> None:
    running_keys: dict[str, int] = {}
    most_at_once = 0
    order: dict[str, list[int]] = {}

    @state.on_change("slow", scope="w", concurrency=8)
    async def slow(c: Change) -> None:
        nonlocal most_at_once
        running_keys[c.key] = running_keys.get(c.key, 0) + 1
        assert running_keys[c.key] == 1, f"two handlers of {c.key} at once"
        most_at_once = max(most_at_once, len([k for k, n in running_keys.items() if n]))
        await asyncio.sleep(0.05)
        order.setdefault(c.key, []).append(c.new_value)
        running_keys[c.key] -= 1

    async with running(state):
        for i in range(24):
            await state.set("w", f"k{i % 6}", i)
        await eventually(lambda: sum(len(v) for v in order.values()) == 24)
    assert all(v == sorted(v) for v in order.values()), order
    assert most_at_once > 1, "different keys never ran at the same time"


async def test_a_failing_handler_is_retried_then_parked_and_retry_runs_it_again(
    state: StateManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "MAX_BACKOFF", 0.05)
    attempts: dict[str, int] = {}
    healed = False

    @state.on_change("flaky", scope="f", max_attempts=3)
    async def flaky(c: Change) -> None:
        attempts[c.key] = attempts.get(c.key, 0) + 1
        if c.key == "bad" and not healed:
            raise RuntimeError(f"cannot handle {c.key}")

    store = store_of(state)
    async with running(state):
        await state.set("f", "bad", 1)
        await state.set("f", "bad", 2)  # the same key: waits for the first, then fails too
        await state.set("f", "good", 1)

        async def parked() -> int:
            [status] = [s for s in await store.status() if s.name == "flaky"]
            return len(status.parked)

        await eventually(lambda: _eq(parked(), 2))
        assert attempts == {"bad": 6, "good": 1}
        [status] = [s for s in await store.status() if s.name == "flaky"]
        assert [p.error for p in status.parked] == ["RuntimeError: cannot handle bad"] * 2
        assert [p.attempts for p in status.parked] == [3, 3]
        healed = True
        assert await store.request_retry("flaky") == 2
        await eventually(lambda: _eq(parked(), 0))
    assert attempts == {"bad": 8, "good": 1}


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_a_restarted_trigger_resumes_after_what_it_finished(make_store: Any) -> None:
    first: StateManager = await make_store()
    handled: list[int] = []
    try:

        @first.on_change("resume", scope="r")
        async def h1(c: Change) -> None:
            handled.append(c.new_value)

        async with running(first):
            for i in range(5):
                await first.set("r", f"k{i}", i)
            await eventually(lambda: len(handled) == 5)
            await asyncio.sleep(0.6)  # the commit after the last one
        for i in range(5, 8):
            await first.set("r", f"k{i}", i)

        @first.on_change("late", scope="r")
        async def h2(c: Change) -> None:
            late.append(c.new_value)

        late: list[int] = []
        # The same store (memory keeps its progress in the manager's adapter), a second run.
        async with running(first):
            await eventually(lambda: len(handled) == 8)
            await first.set("r", "k8", 8)
            await eventually(lambda: len(handled) == 9 and late == [8])
            await asyncio.sleep(0.3)
        assert handled == list(range(9))  # none twice, the ones written while stopped included
    finally:
        await first.close()


async def test_start_beginning_handles_what_was_already_there(state: StateManager) -> None:
    await state.set("b", "old", 1)
    got: list[str] = []

    @state.on_change("from-start", scope="b", start="beginning")
    async def h(c: Change) -> None:
        got.append(c.key)

    async with running(state):
        await state.set("b", "new", 2)
        await eventually(lambda: got == ["old", "new"])


async def test_close_ends_run_triggers_after_in_flight_handlers(make_store: Any) -> None:
    store: StateManager = await make_store()
    finished: list[int] = []
    started = asyncio.Event()

    @store.on_change("slow-close", scope="c")
    async def h(c: Change) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(c.new_value)

    task = asyncio.ensure_future(store.run_triggers())
    try:
        await asyncio.sleep(0.3)
        await store.set("c", "k", 1)
        await asyncio.wait_for(started.wait(), WITHIN)
        await store.close()
        await asyncio.wait_for(task, WITHIN)  # returned, not raised
        assert finished == [1]  # the in-flight handler was let finish
    finally:
        task.cancel()
        await store.close()


async def test_on_change_argument_checks(state: StateManager) -> None:
    with pytest.raises(StateValueError):
        state.on_change("")
    with pytest.raises(StateValueError):
        state.on_change("t", key="k")
    with pytest.raises(StateValueError):
        state.on_change("t", events=("created", "nope"))
    with pytest.raises(StateValueError):
        state.on_change("t", start="yesterday")
    with pytest.raises(StateValueError):
        state.on_change("t", concurrency=0)
    with pytest.raises(StateValueError):
        state.on_change("t", lease=-1)

    @state.on_change("t", events=["state:created"])
    async def h(c: Change) -> None: ...

    assert state.triggers[0].events == frozenset({"created"})
    with pytest.raises(StateValueError):
        state.on_change("t")(h)  # the name is taken
    empty = StateManager.from_url("memory://")
    with pytest.raises(StateConfigError, match="no trigger"):
        await empty.run_triggers()


mark_all(globals(), "changes", "triggers")
