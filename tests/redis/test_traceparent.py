"""The writer's traceparent on Redis: an untraced write sends exactly the arguments of before (no extra ARGV, no
extra stream field), a traced one flags the recorder and adds one; compaction still reads each change's time.

(That every write keeps its caller's traceparent, on one server and on a Cluster, is the contract suite's.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from motia_state import ChangesCompactedError, StateManager, ops
from motia_state.backends.redis import RedisAdapter, scripts
from motia_state.backends.redis import connection as redis_connection
from motia_state.backends.redis.layout import Layout
from motia_state.telemetry import OPERATION
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SCOPE = "traced scope"


async def _every_write(state: StateManager) -> None:
    await state.set(SCOPE, "a", {"n": 1})
    await state.set(SCOPE, "short", 1, ttl=0.05)
    await state.update(SCOPE, "a", [ops.increment("n")])
    await state.update(SCOPE, "new", [ops.set_("x", 1)])
    await state.delete(SCOPE, "a")
    await state.set_many(SCOPE, {"m1": 1, "m2": 2})
    assert await state.delete_many(SCOPE, ["m1", "nope"]) == 1
    await asyncio.sleep(0.1)
    await state.cleanup()
    assert await state.clear(SCOPE) == 2


async def _writing_scripts(
    state: StateManager, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, trace: str | None
) -> list[tuple[Any, ...]]:
    """The EVALSHA commands of the writing scripts ``_every_write`` sends on an empty db, traced as ``trace``."""
    await raw.flushdb()
    # Emptied behind the store's back: the texts it remembers writing are stale now (each would cost one
    # refused compare-and-swap, and change the commands this test compares).
    state.adapter._known.clear()  # type: ignore[attr-defined]
    sent: list[tuple[Any, ...]] = []
    original = redis_connection.Connection._execute

    async def record(self: redis_connection.Connection, client: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        sent.extend(commands)
        return await original(self, client, commands)

    writing = {s.sha for s in scripts.CLUSTER_OF}
    with monkeypatch.context() as patch:
        patch.setattr(redis_connection.Connection, "_execute", record)
        token = OPERATION.set(trace)
        try:
            await _every_write(state)
        finally:
            OPERATION.reset(token)
    return [c for c in sent if c[0] == "EVALSHA" and c[1] in writing]


async def test_untraced_writes_send_no_extra_argument_and_traced_ones_one(
    state: StateManager, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await state.connect()
    plain = await _writing_scripts(state, raw, monkeypatch, None)
    blank = await _writing_scripts(state, raw, monkeypatch, "")  # a span without a valid context
    traced = await _writing_scripts(state, raw, monkeypatch, TP)
    assert blank == plain
    assert len(plain) == len(traced) >= 8
    _, (flag, scope, tag) = Layout("motia:state:").recording(SCOPE)
    for before, after in zip(plain, traced, strict=True):
        # The untraced command is the one of before: the recorder's '1', the scope and its tag, nothing more.
        i = next(i for i in range(len(before) - 2) if before[i : i + 3] == (flag, scope, tag))
        assert TP not in before and "t" not in before[i:]
        assert after == (*before[:i], "t", scope, tag, TP, *before[i + 3 :])


async def test_a_traced_change_has_one_more_stream_field_and_its_time_stays_last(
    state: StateManager, raw: aioredis.Redis
) -> None:
    await state.set(SCOPE, "plain", 1)
    token = OPERATION.set(TP)
    try:
        await state.set(SCOPE, "traced", 2)
    finally:
        OPERATION.reset(token)
    layout = Layout("motia:state:")
    for stream in (layout.stream(SCOPE), layout.changes):  # the scope's stream and every scope's
        (_, plain), (_, traced) = await raw.xrange(stream)
        names = [n.decode() for n in plain]
        assert [n for n in names if n != "s"] == ["e", "k", "n", "t"]
        assert list(traced) == [*(n.encode() for n in names[:-1]), b"p", b"t"]  # compaction reads the last
        assert traced[b"p"] == TP.encode()


async def test_compaction_reads_the_time_of_traced_changes(raw: aioredis.Redis) -> None:
    store = StateManager.from_url(REDIS_URL, changes_retention=0.2)
    try:
        token = OPERATION.set(TP)
        try:
            for i in range(3):
                await store.set(SCOPE, f"k{i}", i)
        finally:
            OPERATION.reset(token)
        await asyncio.sleep(0.5)
        token = OPERATION.set(TP)
        try:
            await store.cleanup()
            await store.set(SCOPE, "after", True)
        finally:
            OPERATION.reset(token)
        with pytest.raises(ChangesCompactedError):
            async with store.watch(since=0) as changes:
                await anext(changes)
        adapter = store.adapter
        assert isinstance(adapter, RedisAdapter)
        kept = [fields[b"k"] for _, fields in await raw.xrange(adapter.stream_key(None))]
        assert kept == [b"k2", b"after"]  # compaction keeps the newest change it saw
    finally:
        await store.close()
