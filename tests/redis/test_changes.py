"""The Redis change feed (SPEC §10, tagged layout): the streams the scripts write, what a watch reads,
blocking reads across processes, cancellation, compaction, ``changes: off``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from motia_state import ChangesCompactedError, StateBackendError, StateManager
from motia_state.backends.redis import RedisAdapter, connection
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis

PREFIX = "motia:state:"
GLOBAL = b"motia:state:__changes__"
COUNTER = b"motia:state:__revision__"
STREAMS = b"motia:state:__changes_scopes__"
FLOOR = b"motia:state:__changes_floor__"


def stream(scope: str) -> bytes:
    return f"{PREFIX}{{{scope}}}#changes".encode()


async def fields(raw: aioredis.Redis, key: bytes) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The stream's entries as (ID, fields), oldest first."""
    entries: Any = await raw.xrange(key)
    return list(entries)


async def last(raw: aioredis.Redis, key: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The stream's newest entry."""
    entries: Any = await raw.xrevrange(key, count=1)
    assert entries, f"{key!r} has no entries"
    newest: tuple[bytes, dict[bytes, bytes]] = entries[0]
    return newest


async def test_set_writes_the_entry_and_its_change_with_exact_json(state: StateManager, raw: aioredis.Redis) -> None:
    value = {"big": 2**70, "f": 1.0, "s": "é"}
    await state.set("trace-1", "booking", value)
    text = await raw.get("motia:state:{trace-1}:booking")
    assert text is not None
    rid, change = await last(raw, stream("trace-1"))
    assert rid == b"1-0"
    assert change[b"e"] == b"created" and change[b"k"] == b"booking" and b"o" not in change
    assert change[b"n"] == text  # the stored text itself, not re-encoded
    assert b"1180591620717411303424" in change[b"n"] and b"1.0" in change[b"n"]
    assert abs(int(change[b"t"]) / 1000 - time.time()) < 5
    gid, global_change = await last(raw, GLOBAL)
    assert gid == rid and global_change == {**change, b"s": b"trace-1"}
    assert await raw.get(COUNTER) == b"1"
    assert await raw.zrange(STREAMS, 0, -1, withscores=True) == [(b"trace-1", 1.0)]
    # The scope's stream is in the scope's slot: watch(scope) touches one slot.
    assert key_slot(stream("trace-1")) == key_slot(b"motia:state:{trace-1}:booking") == key_slot(b"trace-1")
    got = await state.adapter.changes_after("trace-1", None, 0, 10, 0)
    assert [(c.revision, c.event, c.new_value) for c in got] == [(1, "created", value)]
    assert type(got[0].new_value["big"]) is int and type(got[0].new_value["f"]) is float


async def test_every_write_records_with_its_entry(state: StateManager, raw: aioredis.Redis) -> None:
    """After each operation the stream's newest change agrees with the entry as Redis holds it."""

    async def newest(scope: str = "s") -> tuple[int, str, str, Any, Any]:
        rid, f = await last(raw, stream(scope))
        old = json.loads(f[b"o"]) if b"o" in f else None
        new = json.loads(f[b"n"]) if b"n" in f else None
        return int(rid.split(b"-")[0]), f[b"e"].decode(), f[b"k"].decode(), old, new

    await state.set("s", "a", 1)
    assert await newest() == (1, "created", "a", None, 1)
    await state.set("s", "a", 1)
    assert await newest() == (2, "updated", "a", 1, 1)
    await state.update("s", "a", [{"type": "set", "path": "", "value": {"v": 1.0}}])
    assert await newest() == (3, "updated", "a", 1, {"v": 1.0})
    await state.update("s", "n", [{"type": "increment", "path": "v", "by": 2**70}])
    assert await newest() == (4, "created", "n", None, {"v": 2**70})
    await state.delete("s", "a")
    assert await newest() == (5, "deleted", "a", {"v": 1.0}, None)
    await state.delete("s", "a")  # absent: nothing
    assert await raw.get(COUNTER) == b"5"
    await state.set_many("s", {"x": 1.0, "n": [1]})
    assert [e[1][b"e"] for e in await fields(raw, stream("s"))][-2:] == [b"created", b"updated"]
    assert await state.delete_many("s", ["x", "x", "nope"]) == 1
    assert await newest() == (8, "deleted", "x", 1.0, None)
    assert await state.clear("s") == 1
    assert await newest() == (9, "deleted", "n", [1], None)
    assert await state.clear("s") == 0
    assert await raw.get(COUNTER) == b"9"
    assert await raw.xlen(GLOBAL) == 9 and await raw.xlen(stream("s")) == 9


async def test_expiry_is_recorded_where_cleanup_finds_it(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("t", "a", 1, ttl=0.05)
    await state.set("t", "b", 2, ttl=0.05)
    await state.set("t", "c", 3, ttl=0.05)
    await asyncio.sleep(0.2)
    assert await state.delete("t", "c") is None  # Redis dropped it: its index member goes as `expired`
    assert await state.cleanup() == 2
    events = [(f[b"e"], f[b"k"], b"o" in f) for _, f in await fields(raw, stream("t"))]
    assert events[3:] == [(b"expired", b"c", False), (b"expired", b"a", False), (b"expired", b"b", False)]
    assert await state.cleanup() == 0
    assert await raw.xlen(stream("t")) == 6


async def test_a_failed_script_records_nothing(state: StateManager, raw: aioredis.Redis) -> None:
    await raw.set("motia:state:{s}", "not an index")
    with pytest.raises(StateBackendError):
        await state.set("s", "k", 1)
    with pytest.raises(StateBackendError):
        await state.update("s", "k", [{"type": "set", "path": "a", "value": 1}])
    assert await raw.get("motia:state:{s}:k") is None
    assert not await raw.exists(COUNTER, GLOBAL, stream("s"), STREAMS)


async def test_scope_encoding_keeps_streams_apart(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("a}#changes", "k", 1)
    await state.set("a", "k", 2)
    await state.set("100%", "k", 3)
    assert await raw.xlen(b"motia:state:{a%7D#changes}#changes") == 1
    assert await raw.xlen(stream("a")) == 1
    assert await raw.xlen(b"motia:state:{100%25}#changes") == 1
    assert sorted(await raw.zrange(STREAMS, 0, -1)) == [b"100%25", b"a", b"a%7D#changes"]
    got = await state.adapter.changes_after("a}#changes", None, 0, 10, 0)
    assert [(c.scope, c.new_value) for c in got] == [("a}#changes", 1)]
    everything = await state.adapter.changes_after(None, None, 0, 10, 0)
    assert [c.scope for c in everything] == ["a}#changes", "a", "100%"]


async def test_watch_of_a_scope_reads_only_its_stream(
    state: StateManager, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[tuple[Any, ...]] = []
    original = connection.Connection._execute

    async def spy(self: connection.Connection, client: Any, commands: Any) -> list[Any]:
        read.extend(c for c in commands if c[0] in ("XRANGE", "XREAD", "XREVRANGE"))
        return await original(self, client, commands)

    await state.set("other", "k", 0)
    monkeypatch.setattr(connection.Connection, "_execute", spy)
    async with state.watch("bookings") as changes:
        await state.set("bookings", "b1", 1)
        await state.set("other", "k", 1)
        await state.set("bookings", "b2", 2)
        got = [await asyncio.wait_for(anext(changes), 5) for _ in range(2)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.3)  # blocks in XREAD on the server
    assert [c.key for c in got] == ["b1", "b2"]
    keys = {c[c.index("STREAMS") + 1] if c[0] == "XREAD" else c[1] for c in read}
    assert keys == {stream("bookings").decode()}
    assert any(c[0] == "XREAD" and c[1] == "BLOCK" for c in read)
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"bookings")}


async def test_a_key_watch_reads_past_other_keys(state: StateManager) -> None:
    for i in range(25):
        await state.set("s", f"other{i}", i)
    await state.set("s", "k", "mine")
    got = await state.adapter.changes_after("s", "k", 0, 10, 0)  # 10 a read: three reads past the others
    assert [(c.key, c.new_value) for c in got] == [("k", "mine")]
    assert await state.adapter.changes_after("s", "k", got[0].revision, 10, 0) == []


async def test_a_change_from_another_process_reaches_a_watch(state: StateManager) -> None:
    code = (
        "import asyncio, sys\n"
        "from motia_state import StateManager\n"
        "async def main():\n"
        "    s = StateManager.from_url(sys.argv[1])\n"
        "    await s.set('jobs', 'j1', {'n': 2**70})\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    async with state.watch("jobs") as changes:
        pending = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0.2)  # the watch is blocked in XREAD now
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, REDIS_URL)
        assert await proc.wait() == 0
        written = time.monotonic()
        change = await asyncio.wait_for(pending, 10)
        assert time.monotonic() - written < 3.0
    assert (change.event, change.key, change.new_value) == ("created", "j1", {"n": 2**70})


async def _blocked(raw: aioredis.Redis, name: str) -> int:
    """Connections called ``name`` blocked in XREAD right now."""
    return sum(1 for c in await raw.client_list() if c.get("name") == name and c.get("cmd") == "xread")


async def test_a_cancelled_block_leaves_the_pool_usable(raw: aioredis.Redis) -> None:
    # One connection in the pool, and a socket timeout shorter than the block.
    name = f"motia-test-{uuid.uuid4().hex}"
    state = StateManager.from_url(f"{REDIS_URL}?socket_timeout=0.5&client_name={name}", pool_size=1)
    try:
        adapter = state.adapter
        assert isinstance(adapter, RedisAdapter)
        await state.set("s", "k", 1)
        after = await state.revision("s")
        started = time.monotonic()
        assert await adapter.changes_after("s", None, after, 10, 1.0) == []  # outlived socket_timeout
        assert time.monotonic() - started >= 0.9
        for _ in range(3):
            now = await state.revision("s")
            task = asyncio.ensure_future(adapter.changes_after("s", None, now, 10, 5.0))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The pool's only connection was dropped, not handed out with an XREAD reply pending.
            await state.set("s", "k", 2)
            assert await state.get("s", "k") == 2
            assert await raw.ping()
        changes = await asyncio.wait_for(adapter.changes_after("s", None, after, 10, 5.0), 3)
        assert [c.new_value for c in changes] == [2, 2, 2]
        # The blocking pool's connection works again too: a block is woken by a write, and a write made
        # while a watch blocks does not wait for the block (watches have a pool of their own).
        now = await state.revision("s")
        task = asyncio.ensure_future(adapter.changes_after("s", None, now, 10, 5.0))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await state.set("s", "k", 3)
        assert time.monotonic() - started < 1.0
        assert [c.new_value for c in await asyncio.wait_for(task, 3)] == [3]
        blocking = asyncio.ensure_future(adapter.changes_after("s", None, await state.revision("s"), 10, 5.0))
        await asyncio.sleep(0.2)
        assert await _blocked(raw, name) == 1  # (the check below can see one)
        blocking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocking
        for _ in range(40):
            if await _blocked(raw, name) == 0:
                break
            await asyncio.sleep(0.05)
        assert await _blocked(raw, name) == 0  # the cancelled XREAD's connection was closed
    finally:
        await state.close()


async def test_compaction_trims_by_retention_and_keeps_the_newest(raw: aioredis.Redis) -> None:
    state = StateManager.from_url(REDIS_URL, changes_retention=0.3)
    try:
        await state.set("a", "k", 1)  # 1
        await state.set("b", "k", 2)  # 2
        await state.set("a", "k", 3)  # 3
        await asyncio.sleep(0.5)
        await state.set("c", "k", 4)  # 4: recent
        await state.cleanup()
        assert [rid for rid, _ in await fields(raw, GLOBAL)] == [b"4-0"]
        assert await raw.get(FLOOR) == b"3"
        assert not await raw.exists(stream("a"), stream("b"))  # emptied: deleted, and out of the registry
        assert await raw.zrange(STREAMS, 0, -1, withscores=True) == [(b"c", 4.0)]
        with pytest.raises(ChangesCompactedError) as raised:
            await state.adapter.changes_after("a", None, 0, 10, 0)
        assert raised.value.oldest == 4
        assert await state.revision("a") == 3  # the floor: a watch of it starts there
        assert [c.revision for c in await state.adapter.changes_after(None, None, 3, 10, 0)] == [4]
        # Everything old: the newest change stays, so the stream still says where a watch resumes.
        await asyncio.sleep(0.5)
        await state.cleanup()
        assert [rid for rid, _ in await fields(raw, GLOBAL)] == [b"4-0"]
        assert await raw.get(FLOOR) == b"3"
        assert await state.revision() == 4
        await state.set("c", "k", 5)
        await asyncio.sleep(0.5)
        await state.cleanup()
        assert [rid for rid, _ in await fields(raw, GLOBAL)] == [b"5-0"]
        assert await raw.get(FLOOR) == b"4"
        assert [rid for rid, _ in await fields(raw, stream("c"))] == [b"5-0"]
        assert await raw.zrange(STREAMS, 0, -1, withscores=True) == [(b"c", 5.0)]
        async with state.watch("c", since=4) as changes:
            assert (await asyncio.wait_for(anext(changes), 5)).revision == 5
    finally:
        await state.close()


async def test_compaction_works_in_batches(raw: aioredis.Redis) -> None:
    state = StateManager.from_url(REDIS_URL, changes_retention=0.2)
    try:
        await state.set_many("big", {f"k{i}": i for i in range(2500)})
        await state.set_many("small", {"k": 0})
        await asyncio.sleep(0.4)
        await state.set("fresh", "k", 1)
        await state.cleanup()
        assert await raw.xlen(GLOBAL) == 1
        assert await raw.get(FLOOR) == b"2501"
        assert not await raw.exists(stream("big"), stream("small"))
        assert await raw.zrange(STREAMS, 0, -1) == [b"fresh"]
    finally:
        await state.close()


async def test_changes_off_writes_no_stream_keys(raw: aioredis.Redis) -> None:
    state = StateManager.from_url(REDIS_URL, changes=False)
    try:
        assert isinstance(state.adapter, RedisAdapter) and state.adapter.changes_off
        await state.set("s", "k", 1)
        await state.set("s", "t", 1, ttl=0.05)
        await state.update("s", "k", [{"type": "set", "path": "", "value": 2}])
        await state.update("s", "u", [{"type": "set", "path": "a", "value": 1}])
        await state.set_many("s", {"a": 1, "b": 2})
        await state.delete("s", "a")
        await state.delete_many("s", ["b"])
        await asyncio.sleep(0.1)
        await state.cleanup()
        await state.clear("s")
        await state.set("s2", "k", 1)
        names = sorted(await raw.keys("*"))
        assert names == [b"motia:state:__scopes__", b"motia:state:{s2}", b"motia:state:{s2}:k"]
    finally:
        await state.close()


async def test_motia_layout_has_no_change_feed(raw: aioredis.Redis) -> None:
    state = StateManager.from_url(REDIS_URL + "?layout=motia")
    try:
        await state.set("s", "k", 1)
        with pytest.raises(NotImplementedError, match="layout"):
            await state.adapter.revision(None)
        with pytest.raises(NotImplementedError, match="layout"):
            await state.adapter.changes_after("s", None, 0, 10, 0)
        assert await raw.keys("*") == [b"motia:state:s:k"]
    finally:
        await state.close()
