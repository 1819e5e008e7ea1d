"""SPEC §10: the change feed (``watch``, ``revision``, ``Change``), on every backend that records changes.

Each test ends its writes with a sentinel entry and reads up to it, so "nothing else was recorded" is checked
without waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from motia_state import (
    Change,
    ChangesCompactedError,
    ChangeStream,
    StateConfigError,
    StateManager,
    StateValueError,
    UpdateOpError,
)
from motia_state.telemetry import OPERATION
from motia_state.testing.helpers import mark_all

SENTINEL = ("zz-sentinel", "end")
READ_WITHIN = 10.0  # seconds: generous, these machines are shared


async def until_sentinel(changes: ChangeStream) -> list[Change]:
    """The changes delivered before the sentinel write (which every test makes last)."""
    out: list[Change] = []
    while True:
        change = await asyncio.wait_for(anext(changes), READ_WITHIN)
        if (change.scope, change.key) == SENTINEL:
            return out
        out.append(change)


async def sentinel(state: StateManager) -> None:
    await state.set(*SENTINEL, True)


def summary(changes: list[Change]) -> list[tuple[str, str, str, Any, Any]]:
    return [(c.event, c.scope, c.key, c.old_value, c.new_value) for c in changes]


@pytest.mark.motia_state_needs("changes_all_scopes")  # watch()/revision() of every scope
async def test_each_operation_records_its_changes(state: StateManager) -> None:
    async with state.watch() as changes:
        await state.set("s", "a", {"n": 1})
        await state.set("s", "a", {"n": 1})  # an equal value still updates a live entry
        await state.update("s", "a", [{"type": "increment", "path": "n", "by": 2}])
        await state.update("s", "new", [{"type": "set", "path": "x", "value": "y"}])
        await state.delete("s", "a")
        await state.delete("s", "a")  # absent: nothing
        await state.set_many("m", {"k1": 1, "k2": [2]})
        await state.set_many("m", {"k2": 3})
        assert await state.delete_many("m", ["k1", "nope"]) == 1
        assert await state.clear("m") == 1
        assert await state.clear("m") == 0  # empty: nothing
        await sentinel(state)
        assert summary(await until_sentinel(changes)) == [
            ("created", "s", "a", None, {"n": 1}),
            ("updated", "s", "a", {"n": 1}, {"n": 1}),
            ("updated", "s", "a", {"n": 1}, {"n": 3}),
            ("created", "s", "new", None, {"x": "y"}),
            ("deleted", "s", "a", {"n": 3}, None),
            ("created", "m", "k1", None, 1),
            ("created", "m", "k2", None, [2]),
            ("updated", "m", "k2", [2], 3),
            ("deleted", "m", "k1", 1, None),
            ("deleted", "m", "k2", 3, None),
        ]


@pytest.mark.motia_state_needs("changes_all_scopes")  # watch()/revision() of every scope
async def test_rejected_writes_record_nothing(state: StateManager) -> None:
    await state.set("s", "k", {"n": 1})
    async with state.watch() as changes:
        with pytest.raises(StateValueError):
            await state.set("s", "k", float("nan"))
        with pytest.raises(UpdateOpError):
            await state.update("s", "k", [{"type": "increment", "path": "n", "by": 1}, {"type": "nope"}])
        with pytest.raises(StateValueError):
            await state.set_many("s", {"a": 1, "b": {1, 2}})
        await state.set_many("s", {})
        assert await state.delete_many("s", []) == 0
        await sentinel(state)
        assert await until_sentinel(changes) == []
    assert await state.get("s", "k") == {"n": 1}


async def test_change_fields_and_motia_names(state: StateManager) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    async with state.watch("trace-1") as changes:
        await state.set("trace-1", "booking", {"status": "pending"})
        await state.delete("trace-1", "booking")
        created = await asyncio.wait_for(anext(changes), READ_WITHIN)
        deleted = await asyncio.wait_for(anext(changes), READ_WITHIN)
    assert isinstance(created, Change)
    assert type(created.revision) is int and created.revision > 0
    assert deleted.revision > created.revision
    assert created.at.tzinfo is not None and created.at.utcoffset() == timedelta(0)
    assert before <= created.at <= deleted.at <= datetime.now(UTC) + timedelta(seconds=5)
    assert (created.group_id, created.item_id, created.event_type) == ("trace-1", "booking", "state:created")
    assert deleted.event_type == "state:deleted"
    with pytest.raises(AttributeError):
        created.revision = 0  # type: ignore[misc,unused-ignore]


@pytest.mark.motia_state_needs("changes_all_scopes")  # watch()/revision() of every scope
async def test_revision_then_watch_since_misses_nothing(state: StateManager) -> None:
    assert await state.revision() == 0
    await state.set("s", "a", 1)
    rev = await state.revision()
    assert rev > 0
    assert await state.revision("s") == rev
    await state.set("s", "b", 2)
    await state.set("other", "c", 3)
    assert await state.revision() > rev
    async with state.watch(since=rev) as changes:
        await sentinel(state)
        assert summary(await until_sentinel(changes)) == [
            ("created", "s", "b", None, 2),
            ("created", "other", "c", None, 3),
        ]


@pytest.mark.motia_state_needs("changes_all_scopes")  # watch()/revision() of every scope
async def test_watch_without_since_starts_now(state: StateManager) -> None:
    await state.set("s", "before", 1)
    async with state.watch() as changes:
        await state.set("s", "after", 2)
        await sentinel(state)
        assert [c.key for c in await until_sentinel(changes)] == ["after"]


@pytest.mark.motia_state_needs("changes_all_scopes")  # watch()/revision() of every scope
async def test_revisions_increase_and_resume_sees_the_rest_exactly_once(state: StateManager) -> None:
    start = await state.revision()
    for i in range(12):
        await state.set("s", f"k{i % 3}", i)
    await sentinel(state)
    async with state.watch(since=start) as changes:
        first = [await asyncio.wait_for(anext(changes), READ_WITHIN) for _ in range(5)]
    revisions = [c.revision for c in first]
    assert revisions == sorted(set(revisions))
    async with state.watch(since=first[-1].revision) as changes:
        rest = await until_sentinel(changes)
    delivered = first + rest
    assert [c.new_value for c in delivered] == list(range(12))
    assert all(b.revision > a.revision for a, b in itertools.pairwise(delivered))


async def test_scope_and_key_watches_see_only_theirs(state: StateManager) -> None:
    async with (
        state.watch("s") as of_scope,
        state.watch("s", key="k") as of_key,
        state.watch("s:") as of_prefix_lookalike,
    ):
        await state.set("s", "k", 1)
        await state.set("s", "other", 2)
        await state.set("s2", "k", 3)
        await state.set("s:", "k", 4)
        await state.set("s", "k", 5)
        await state.set(*SENTINEL, True)
        await state.set("s", SENTINEL[1], True)
        await state.set("s:", SENTINEL[1], True)
        got_scope = [await asyncio.wait_for(anext(of_scope), READ_WITHIN) for _ in range(4)]
        got_key = [await asyncio.wait_for(anext(of_key), READ_WITHIN) for _ in range(2)]
        got_prefix = [await asyncio.wait_for(anext(of_prefix_lookalike), READ_WITHIN) for _ in range(2)]
    assert [(c.key, c.new_value) for c in got_scope] == [("k", 1), ("other", 2), ("k", 5), (SENTINEL[1], True)]
    assert [c.new_value for c in got_key] == [1, 5]
    assert [(c.scope, c.new_value) for c in got_prefix] == [("s:", 4), ("s:", True)]


async def test_per_key_chain_under_concurrent_updates(state: StateManager) -> None:
    async with state.watch("count") as changes:

        async def bump(times: int) -> None:
            for _ in range(times):
                await state.update("count", "n", [{"type": "increment", "path": "v", "by": 1}])

        await asyncio.gather(*(bump(10) for _ in range(8)))
        got = [await asyncio.wait_for(anext(changes), READ_WITHIN) for _ in range(80)]
    assert [c.event for c in got] == ["created"] + ["updated"] * 79
    assert got[0].old_value is None
    for previous, change in itertools.pairwise(got):
        assert change.old_value == previous.new_value
        assert change.revision > previous.revision
    assert got[-1].new_value == {"v": 80}


async def test_a_cancelled_wait_loses_nothing(state: StateManager) -> None:
    async with state.watch("s") as changes:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(changes), 0.2)
        await state.set("s", "a", 1)
        await state.set("s", "b", 2)
        first = await asyncio.wait_for(anext(changes), READ_WITHIN)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(1), 0.01)
        second = await asyncio.wait_for(anext(changes), READ_WITHIN)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.2)
        await state.set("s", "c", 3)
        third = await asyncio.wait_for(anext(changes), READ_WITHIN)
    assert [first.key, second.key, third.key] == ["a", "b", "c"]


async def test_iterating_without_async_with_and_aclose(state: StateManager) -> None:
    changes = state.watch("s")
    consumer = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0.3)  # subscribed on the first anext: give it time to start waiting
    await state.set("s", "k", 1)
    change = await asyncio.wait_for(consumer, READ_WITHIN)
    assert change.key == "k"
    await changes.aclose()
    await changes.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(changes)


@pytest.mark.motia_state_needs("changes_all_scopes")  # watch()/revision() of every scope
async def test_close_ends_open_watches(make_store: Any) -> None:
    store = await make_store()
    try:
        seen: list[Change] = []

        async def follow() -> str:
            async with store.watch() as changes:
                async for change in changes:
                    seen.append(change)
            return "ended"

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.3)
        await store.set("s", "k", 1)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        await store.close()
        assert await asyncio.wait_for(task, READ_WITHIN) == "ended"
        assert [c.key for c in seen] == ["k"]
    finally:
        await store.close()
    # The same manager works again after close(), watches included.
    try:
        async with store.watch(since=0) as changes:
            assert (await asyncio.wait_for(anext(changes), READ_WITHIN)).key == "k"
    finally:
        await store.close()


async def test_bulk_operations_record_one_change_per_entry(state: StateManager) -> None:
    mapping = {f"k{i:03}": {"i": i} for i in range(60)}
    async with state.watch("bulk") as changes:
        await state.set_many("bulk", mapping)
        assert await state.clear("bulk") == 60
        await state.set("bulk", SENTINEL[1], True)
        got: list[Change] = []
        while len(got) < 121:
            got.append(await asyncio.wait_for(anext(changes), READ_WITHIN))
    created, deleted = got[:60], got[60:120]
    assert {c.key for c in created} == set(mapping) and {c.event for c in created} == {"created"}
    assert {c.key: c.new_value for c in created} == mapping
    assert {c.key for c in deleted} == set(mapping) and {c.event for c in deleted} == {"deleted"}
    assert {c.key: c.old_value for c in deleted} == mapping
    assert got[120].key == SENTINEL[1]


async def test_bulk_writes_over_expired_entries(state: StateManager) -> None:
    # set_many over new, live and expired entries (300: several statements where a backend splits a batch),
    # then a clear of a scope holding expired entries: created / updated / deleted, per entry.
    await state.set_many("bulk", {f"k{i:03d}": "old" for i in range(0, 300, 3)}, ttl=0.3)
    await state.set_many("bulk", {f"k{i:03d}": "live" for i in range(1, 300, 3)})
    await asyncio.sleep(0.65)
    mapping = {f"k{i:03d}": i for i in range(300)}
    async with state.watch("bulk") as changes:
        await state.set_many("bulk", mapping)
        await state.set_many("bulk", {f"x{i:03d}": i for i in range(5)}, ttl=0.3)
        await asyncio.sleep(0.65)
        assert await state.clear("bulk") == 300
        await state.set("bulk", SENTINEL[1], True)
        got: list[Change] = []
        while len(got) < 306 or got[-1].key != SENTINEL[1]:
            got.append(await asyncio.wait_for(anext(changes), READ_WITHIN))
    writes = {c.key: c for c in got[:300]}
    assert set(writes) == set(mapping)
    for i in range(300):
        c = writes[f"k{i:03d}"]
        if i % 3 == 1:
            assert (c.event, c.old_value, c.new_value) == ("updated", "live", i)
        else:  # absent, or expired: a new entry
            assert (c.event, c.old_value, c.new_value) == ("created", None, i)
    removed = [c for c in got[305:] if c.key != SENTINEL[1]]
    deleted = [c for c in removed if c.event == "deleted"]
    assert {c.key: c.old_value for c in deleted} == mapping
    # The expired x-entries: recorded as expired or not at all (where the backend removed them itself).
    assert {c.event for c in removed} <= {"deleted", "expired"}
    assert all(c.key.startswith("x") for c in removed if c.event == "expired")


async def test_argument_checks(state: StateManager) -> None:
    with pytest.raises(StateValueError):
        state.watch(key="k")
    with pytest.raises(StateValueError):
        state.watch("s", since=-1)
    with pytest.raises(StateValueError):
        state.watch("s", since=True)
    with pytest.raises(ValueError):
        state.watch("")
    with pytest.raises(ValueError):
        await state.revision("")


async def test_changes_off_records_nothing_and_watch_names_the_option(make_store: Any) -> None:
    store = await make_store(changes=False)
    try:
        await store.set("s", "k", 1)
        assert await store.get("s", "k") == 1
        with pytest.raises(StateConfigError, match="changes"):
            store.watch()
        with pytest.raises(StateConfigError, match="changes"):
            await store.revision()
    finally:
        await store.close()


async def test_delivered_values_are_fresh_objects(state: StateManager) -> None:
    async with state.watch("s") as one, state.watch("s") as two:
        await state.set("s", "k", {"list": [1]})
        a = await asyncio.wait_for(anext(one), READ_WITHIN)
        a.new_value["list"].append(2)
        b = await asyncio.wait_for(anext(two), READ_WITHIN)
    assert b.new_value == {"list": [1]}
    assert await state.get("s", "k") == {"list": [1]}


@pytest.mark.motia_state_needs("ttl")
async def test_expiry_records_expired_and_the_chain_restarts(state: StateManager) -> None:
    async with state.watch("t") as changes:
        await state.set("t", "gone", {"v": 1}, ttl=0.3)
        await state.set("t", "back", {"v": 1}, ttl=0.3)
        await asyncio.sleep(0.7)
        await state.cleanup()
        await state.set("t", "back", {"v": 2})
        await state.set("t", SENTINEL[1], True)
        got: list[Change] = []
        while not got or got[-1].key != SENTINEL[1]:
            got.append(await asyncio.wait_for(anext(changes), READ_WITHIN))
    got = got[:-1]
    assert [(c.event, c.key) for c in got[:2]] == [("created", "gone"), ("created", "back")]
    expired = [c for c in got if c.event == "expired"]
    assert {c.key for c in expired} >= {"gone"}
    for c in expired:
        assert c.new_value is None and c.old_value in (None, {"v": 1})
    assert (got[-1].event, got[-1].key, got[-1].old_value, got[-1].new_value) == ("created", "back", None, {"v": 2})


@pytest.mark.motia_state_needs("ttl")
@pytest.mark.parametrize(
    "scope",
    [
        # watch()/revision() of every scope
        pytest.param(None, marks=pytest.mark.motia_state_needs("changes_all_scopes"), id="every-scope"),
        pytest.param("s", id="one-scope"),
    ],
)
async def test_since_older_than_retention_raises_compacted(make_store: Any, scope: str | None) -> None:
    store = await make_store(changes_retention=0.3)
    try:
        start = await store.revision(scope)
        await store.set("s", "a", 1)
        await store.set("s", "b", 2)
        await asyncio.sleep(0.8)
        await store.cleanup()
        await store.set("s", "c", 3)
        with pytest.raises(ChangesCompactedError) as raised:
            async with store.watch(scope, since=start) as changes:
                await anext(changes)
        assert type(raised.value.oldest) is int and raised.value.oldest > start + 1
        assert "revision" in str(raised.value)
        rev = await store.revision(scope)
        async with store.watch(scope, since=rev) as changes:
            await store.set("s", "d", 4)
            assert (await asyncio.wait_for(anext(changes), READ_WITHIN)).key == "d"
    finally:
        await store.close()


# --- the same promises on one scope's feed: a store whose feed is per scope (a Redis Cluster) keeps them too ---


async def test_each_operation_records_its_changes_in_one_scope(state: StateManager) -> None:
    async with state.watch("one") as changes:
        await state.set("one", "a", {"n": 1})
        await state.update("one", "a", [{"type": "increment", "path": "n", "by": 2}])
        await state.delete("one", "a")
        await state.delete("one", "a")  # absent: nothing
        await state.set_many("one", {"k1": 1, "k2": [2]})
        assert await state.delete_many("one", ["k1", "nope"]) == 1
        assert await state.clear("one") == 1
        await state.set("other", "x", 1)  # another scope: not in this feed
        await state.set("one", SENTINEL[1], True)
        got: list[Change] = []
        while not got or got[-1].key != SENTINEL[1]:
            got.append(await asyncio.wait_for(anext(changes), READ_WITHIN))
    assert [(c.event, c.scope, c.key, c.old_value, c.new_value) for c in got[:-1]] == [
        ("created", "one", "a", None, {"n": 1}),
        ("updated", "one", "a", {"n": 1}, {"n": 3}),
        ("deleted", "one", "a", {"n": 3}, None),
        ("created", "one", "k1", None, 1),
        ("created", "one", "k2", None, [2]),
        ("deleted", "one", "k1", 1, None),
        ("deleted", "one", "k2", [2], None),
    ]
    assert all(b.revision > a.revision for a, b in itertools.pairwise(got))


async def test_scope_revision_then_watch_since_resumes_exactly_once(state: StateManager) -> None:
    assert await state.revision("s") == 0
    await state.set("s", "a", 1)
    rev = await state.revision("s")
    assert rev > 0
    for i in range(10):
        await state.set("s", f"k{i % 3}", i)
    await state.set("s", SENTINEL[1], True)
    async with state.watch("s", since=rev) as changes:
        first = [await asyncio.wait_for(anext(changes), READ_WITHIN) for _ in range(4)]
    async with state.watch("s", since=first[-1].revision) as changes:
        rest: list[Change] = []
        while not rest or rest[-1].key != SENTINEL[1]:
            rest.append(await asyncio.wait_for(anext(changes), READ_WITHIN))
    delivered = first + rest[:-1]
    assert [c.new_value for c in delivered] == list(range(10))
    assert all(b.revision > a.revision for a, b in itertools.pairwise(first + rest))


async def test_close_ends_open_scope_watches(make_store: Any) -> None:
    store = await make_store()
    try:

        async def follow() -> list[Change]:
            seen: list[Change] = []
            async with store.watch("s") as changes:
                async for change in changes:
                    seen.append(change)
            return seen

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.3)
        await store.set("s", "k", 1)
        await asyncio.sleep(0.5)
        await store.close()
        assert [c.key for c in await asyncio.wait_for(task, READ_WITHIN)] == ["k"]
        async with store.watch("s", since=0) as changes:  # the same manager works again
            assert (await asyncio.wait_for(anext(changes), READ_WITHIN)).key == "k"
    finally:
        await store.close()


# --- the writer's trace context (telemetry.OPERATION) travels with every change it records -------------------


def traceparent(n: int) -> str:
    """A W3C traceparent told apart by ``n``."""
    return f"00-{n + 1:032x}-{n + 1:016x}-01"


@contextlib.contextmanager
def traced(value: str | None) -> Iterator[None]:
    """Run the block as a traced operation would: ``OPERATION`` holds ``value`` (None: not traced)."""
    token = OPERATION.set(value)
    try:
        yield
    finally:
        OPERATION.reset(token)


async def scope_changes(state: StateManager, scope: str, since: int) -> list[Change]:
    """The changes of ``scope`` after ``since``, up to the sentinel key written last in it."""
    out: list[Change] = []
    async with state.watch(scope, since=since) as changes:
        while True:
            change = await asyncio.wait_for(anext(changes), READ_WITHIN)
            if change.key == SENTINEL[1]:
                return out
            out.append(change)


async def test_each_write_keeps_the_traceparent_of_its_operation(state: StateManager) -> None:
    scope = "traced"
    since = await state.revision(scope)
    with traced(traceparent(1)):
        await state.set(scope, "a", {"n": 1})
    with traced(traceparent(2)):
        await state.set(scope, "a", {"n": 2})
    with traced(traceparent(3)):
        await state.update(scope, "a", [{"type": "increment", "path": "n", "by": 1}])
    with traced(traceparent(4)):
        await state.update(scope, "new", [{"type": "set", "path": "x", "value": 1}])
    with traced(traceparent(5)):
        await state.delete(scope, "a")
    with traced(traceparent(6)):
        await state.set_many(scope, {"m1": 1, "m2": 2})
    with traced(traceparent(7)):
        await state.set_many(scope, {"m2": 3})
    with traced(traceparent(8)):
        assert await state.delete_many(scope, ["m1", "nope"]) == 1
    with traced(traceparent(9)):
        assert await state.clear(scope) == 2
    await state.set(scope, "plain", 1)  # not traced
    with traced(""):  # a traced operation whose span has no valid context
        await state.set(scope, "plain", 2)
    with traced(traceparent(10)):
        await state.delete(scope, "absent")  # records nothing, so nothing carries it
        await state.set(scope, "last", 1)
    await state.set(scope, SENTINEL[1], True)
    got = await scope_changes(state, scope, since)
    expected = [
        ("created", "a", traceparent(1)),
        ("updated", "a", traceparent(2)),
        ("updated", "a", traceparent(3)),
        ("created", "new", traceparent(4)),
        ("deleted", "a", traceparent(5)),
        ("created", "m1", traceparent(6)),
        ("created", "m2", traceparent(6)),
        ("updated", "m2", traceparent(7)),
        ("deleted", "m1", traceparent(8)),
        ("deleted", "m2", traceparent(9)),  # clear: in the order the backend removed them
        ("deleted", "new", traceparent(9)),
        ("created", "plain", None),
        ("updated", "plain", None),
        ("created", "last", traceparent(10)),
    ]
    seen = [(c.event, c.key, c.traceparent) for c in got]
    assert seen[:9] + sorted(seen[9:11]) + seen[11:] == expected
    # The traceparent is no part of a change's identity nor of its repr.
    for change in got:
        assert dataclasses.replace(change, traceparent=None) == change
        assert "traceparent" not in repr(change) and "00-" not in repr(change)


@pytest.mark.motia_state_needs("ttl")
async def test_cleanup_gives_its_traceparent_to_the_expired_changes(state: StateManager) -> None:
    scope = "traced-ttl"
    since = await state.revision(scope)
    with traced(traceparent(1)):
        await state.set(scope, "gone", {"v": 1}, ttl=0.3)
    await asyncio.sleep(0.7)
    with traced(traceparent(2)):
        await state.cleanup()
    await state.set(scope, SENTINEL[1], True)
    got = await scope_changes(state, scope, since)
    assert [(c.event, c.key, c.traceparent) for c in got] == [
        ("created", "gone", traceparent(1)),
        ("expired", "gone", traceparent(2)),
    ]


async def test_concurrent_writers_each_keep_their_own_traceparent(state: StateManager) -> None:
    """Many tasks at once, each its own operation (a copy of the context): batched writes keep every caller's."""
    scope = "traced-many"

    def trace_of(i: int) -> str | None:
        return None if i % 7 == 0 else "" if i % 7 == 1 else traceparent(i)

    def key(j: int) -> str:
        return f'k{j}."\\ {{é}}'  # characters a batch's map must carry as they are

    async def write(i: int) -> None:
        OPERATION.set(trace_of(i))  # this task's own context (gather runs each coroutine in a task)
        await state.set(scope, key(i % 20), {"by": i})  # keys written twice: rounds within a batch

    async def write_shared(i: int) -> None:
        OPERATION.set(traceparent(100))  # one traceparent for a whole batch
        await state.set(scope, f"shared{i}", {"by": 1000 + i})

    async def bump(i: int) -> None:
        OPERATION.set(trace_of(i))  # contended updates of one key: retried, or locked
        await state.update(scope, "counter", [{"type": "set", "path": "by", "value": 2000 + i}])

    async def remove(j: int) -> None:
        OPERATION.set(trace_of(j))
        await state.delete(scope, key(j))

    since = await state.revision(scope)
    await asyncio.gather(*(write(i) for i in range(50)))
    await asyncio.gather(*(write_shared(i) for i in range(30)))
    await asyncio.gather(*(bump(i) for i in range(20)))
    await asyncio.gather(*(remove(j) for j in range(20)))
    await state.set(scope, SENTINEL[1], True)
    got = await scope_changes(state, scope, since)
    assert len(got) == 50 + 30 + 20 + 20
    for change in got:
        if change.event == "deleted":
            expected = trace_of(int(change.key[1:].split(".")[0]))
        else:
            by = change.new_value["by"]
            expected = trace_of(by) if by < 1000 else traceparent(100) if by < 2000 else trace_of(by - 2000)
        assert change.traceparent == (expected or None), change


mark_all(globals(), "changes")
