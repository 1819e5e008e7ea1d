"""The SQLite change feed beyond the contract suite: wake-ups from other processes (PRAGMA data_version),
the store-wide ``changes: off`` switch (the triggers), and compaction in bounded batches.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from motia_state import ChangesCompactedError, StateManager
from motia_state.backends.sqlite.statements import COMPACT_BATCH
from motia_state.sql import CHANGES_TABLE, TABLE_NAME
from motia_state.sql.feed import SQLITE_TRIGGERS

# Far below the stream's own fallback (it asks again every 5 s), far above the 0.1 s poll: a watch that
# misses the data_version wake-up fails this bound.
OTHER_PROCESS_WITHIN = 3.0

# A writer in another process: connects, says "ready", then writes one entry per line read and answers each
# with "done" once the write is committed.
_WRITER = """
import asyncio, sys
from motia_state import StateManager

async def main() -> None:
    state = StateManager.from_url(sys.argv[1])
    await state.connect()
    print("ready", flush=True)
    for line in sys.stdin:
        await state.set("x", line.strip(), {"from": "child"})
        print("done", flush=True)
    await state.close()

asyncio.run(main())
"""


def _file(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _triggers(path: Path) -> set[str]:
    sql = f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{TABLE_NAME}'"
    return {str(r[0]) for r in _query(path, sql)}


def _count(path: Path) -> int:
    (n,) = _query(path, f"SELECT count(*) FROM {CHANGES_TABLE}")[0]
    assert isinstance(n, int)
    return n


async def test_a_commit_by_another_process_reaches_a_waiting_watch_fast(tmp_path: Path) -> None:
    path = _file(tmp_path)
    state = StateManager.from_url(_url(path))
    child = None
    try:
        await state.connect()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, _url(path), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert child.stdin is not None and child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"ready"
        async with state.watch("x") as changes:
            for i in range(3):
                waiting = asyncio.ensure_future(anext(changes))
                await asyncio.sleep(0.3)  # the watch is now waiting for a wake-up, not reading
                assert not waiting.done()
                child.stdin.write(f"k{i}\n".encode())
                await child.stdin.drain()
                assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"done"
                committed = time.monotonic()
                change = await asyncio.wait_for(waiting, OTHER_PROCESS_WITHIN)
                assert time.monotonic() - committed < OTHER_PROCESS_WITHIN
                assert (change.event, change.key, change.new_value) == ("created", f"k{i}", {"from": "child"})
                assert abs(change.at - datetime.now(UTC)) < timedelta(seconds=30)
        child.stdin.close()
        assert await asyncio.wait_for(child.wait(), 30) == 0
    finally:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        await state.close()


async def test_a_second_store_on_the_same_file_in_this_process(tmp_path: Path) -> None:
    # Another connection of this process: only data_version tells the first store's watch about it.
    path = _file(tmp_path)
    reader, writer = StateManager.from_url(_url(path)), StateManager.from_url(_url(path))
    try:
        async with reader.watch("s") as changes:
            waiting = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(0.3)
            await writer.set("s", "k", 1)
            committed = time.monotonic()
            assert (await asyncio.wait_for(waiting, OTHER_PROCESS_WITHIN)).key == "k"
            assert time.monotonic() - committed < 1.0
    finally:
        await reader.close()
        await writer.close()


async def test_no_poll_while_nobody_waits(tmp_path: Path) -> None:
    state = StateManager.from_url(_url(_file(tmp_path)))
    try:
        await state.set("s", "k", 1)
        adapter = state._adapter
        db = adapter._db  # type: ignore[attr-defined]
        async with state.watch("s") as changes:
            waiting = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(0.3)
            assert db._poller is not None and not db._poller.done()
            await state.set("s", "k", 2)
            await asyncio.wait_for(waiting, 5)
        await asyncio.sleep(0.3)
        assert db._poller.done() and not db._waiters
    finally:
        await state.close()


async def test_changes_off_drops_the_triggers_and_on_recreates_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _file(tmp_path)
    caplog.set_level(logging.WARNING, logger="motia_state")
    on = StateManager.from_url(_url(path))
    try:
        await on.set("s", "a", 1)
    finally:
        await on.close()
    assert _triggers(path) == set(SQLITE_TRIGGERS) and _count(path) == 1
    assert not caplog.records

    off = StateManager.from_url(_url(path), changes=False)
    try:
        await off.set("s", "b", 2)
        await off.delete("s", "a")
        assert await off.get("s", "b") == 2
    finally:
        await off.close()
    assert _triggers(path) == set() and _count(path) == 1  # nothing recorded, by any process
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "changes: off" in caplog.text and str(path) in caplog.text and "process" in caplog.text
    caplog.clear()

    # Opening again with changes off: nothing to do, nothing logged.
    off = StateManager.from_url(_url(path), changes=False)
    try:
        await off.set("s", "c", 3)
    finally:
        await off.close()
    assert not caplog.records and _count(path) == 1

    on = StateManager.from_url(_url(path))
    try:
        await on.set("s", "b", 20)
        async with on.watch("s", since=0) as changes:
            got = [await asyncio.wait_for(anext(changes), 5) for _ in range(2)]
    finally:
        await on.close()
    assert _triggers(path) == set(SQLITE_TRIGGERS)
    assert [(c.event, c.key, c.old_value, c.new_value) for c in got] == [
        ("created", "a", None, 1),
        ("updated", "b", 2, 20),  # the writes made while off were not recorded, the entries were
    ]
    assert "re-created" in caplog.text and str(path) in caplog.text


async def test_changes_off_on_a_memory_store() -> None:
    state = StateManager.from_url("sqlite:///:memory:", changes=False)
    try:
        await state.set("s", "k", 1)
        assert await state.get("s", "k") == 1
    finally:
        await state.close()


async def test_compaction_keeps_the_newest_row_and_looks_at_bounded_batches(tmp_path: Path) -> None:
    path = _file(tmp_path)
    state = StateManager.from_url(_url(path), changes_retention=3600)
    total = 2 * COMPACT_BATCH + 2000
    try:
        for start in range(0, total, 1000):
            await state.set_many("c", {f"k{i}": i for i in range(start, start + 1000)})
        await state.set("c", "expiring", 0, ttl=0.05)
        total += 1
        newest = await state.revision()
        await asyncio.sleep(0.1)

        # Recent changes are kept (the triggers' `at` compares with the cutoff as text).
        assert await state.cleanup() == 1  # the count is the expired entries removed
        total += 1  # ... whose removal is itself a change, `expired`
        assert _count(path) == total
        newest += 1

        # Old changes beyond the oldest batch are not looked at: the scan is bounded, and stops when a batch
        # removed less than a full batch.
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                f"UPDATE {CHANGES_TABLE} SET at = '2000-01-01 00:00:00.000' WHERE revision > ?", (COMPACT_BATCH,)
            )
        conn.close()
        assert await state.cleanup() == 0
        assert _count(path) == total

        # All old: removed batch after batch, but never the newest row.
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(f"UPDATE {CHANGES_TABLE} SET at = '2000-01-01 00:00:00.000'")
        conn.close()
        assert await state.cleanup() == 0
        assert _query(path, f"SELECT revision FROM {CHANGES_TABLE}") == [(newest,)]
        assert await state.revision() == newest
        assert await state.revision("nothing-here") == newest - 1  # the floor of what is kept

        with pytest.raises(ChangesCompactedError) as raised:
            async with state.watch(since=newest - 2) as changes:
                await anext(changes)
        assert raised.value.oldest == newest
        async with state.watch("c", since=newest - 1) as changes:
            last = await asyncio.wait_for(anext(changes), 5)
            assert (last.revision, last.event, last.key) == (newest, "expired", "expiring")
            await state.set("c", "after", True)
            assert (await asyncio.wait_for(anext(changes), 5)).revision == newest + 1
    finally:
        await state.close()


async def test_a_quiet_scope_in_a_busy_store_sees_each_of_its_changes_once(tmp_path: Path) -> None:
    # A scoped watch walks the revisions after its position and remembers how far it found nothing: the
    # busy scope's writes wake it without hiding, or repeating, the quiet scope's changes.
    state = StateManager.from_url(_url(_file(tmp_path)))
    try:
        async with state.watch("quiet") as changes, state.watch("quiet", key="q") as one_key:
            for round_ in range(3):
                waiting = asyncio.ensure_future(anext(changes))
                for j in range(3):
                    await state.set_many("busy", {f"r{round_}-{j}-{i}": i for i in range(700)})
                    await asyncio.sleep(0.02)  # let the watch wake, read and wait again
                assert not waiting.done()
                await state.set("quiet", "q", round_)
                got = await asyncio.wait_for(waiting, 5)
                assert (got.key, got.new_value) == ("q", round_)
                assert (await asyncio.wait_for(anext(one_key), 5)).new_value == round_
        async with state.watch("quiet", since=0) as replay:
            again = [await asyncio.wait_for(anext(replay), 5) for _ in range(3)]
        assert [c.new_value for c in again] == [0, 1, 2]
        assert [c.event for c in again] == ["created", "updated", "updated"]
    finally:
        await state.close()


# --- the writer's traceparent (telemetry.OPERATION) ------------------------------------------------------------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _writes(state: StateManager) -> None:
    await state.set("s", "a", {"n": 1})
    await state.set("s", "short", 1, ttl=0.05)
    await state.update("s", "a", [{"type": "increment", "path": "n", "by": 1}])
    await state.set_many("s", {"m1": 1, "m2": 2})
    assert await state.delete_many("s", ["m1"]) == 1
    await state.delete("s", "a")
    await asyncio.sleep(0.1)
    await state.cleanup()
    assert await state.clear("s") == 1


async def test_only_a_traced_write_runs_the_statements_that_tag_its_changes(tmp_path: Path) -> None:
    from motia_state.backends.sqlite import SQLiteAdapter
    from motia_state.telemetry import OPERATION

    state = StateManager.from_url(_url(_file(tmp_path)))
    try:
        await state.connect()
        adapter = state.adapter
        assert isinstance(adapter, SQLiteAdapter)
        run: list[str] = []
        assert adapter._db._conn is not None
        adapter._db._conn.set_trace_callback(run.append)  # called in the worker thread: list.append is safe
        await _writes(state)
        await state.set("e", "end", 1)
        assert run and not [s for s in run if "sqlite_sequence" in s or "traceparent" in s]
        run.clear()
        token = OPERATION.set(TRACEPARENT)
        try:
            await _writes(state)
        finally:
            OPERATION.reset(token)
        assert len([s for s in run if "sqlite_sequence" in s]) == len([s for s in run if "SET traceparent" in s]) >= 7
        await state.set("e", "end", 2)
    finally:
        await state.close()
    rows = _query(_file(tmp_path), f'SELECT event, "key", traceparent FROM {CHANGES_TABLE} ORDER BY revision')
    half = len(rows) // 2
    assert rows[half - 1] == ("created", "end", None) and rows[-1] == ("updated", "end", None)
    assert {r[2] for r in rows[: half - 1]} == {None}
    assert {r[2] for r in rows[half:-1]} == {TRACEPARENT}
    assert [r[:2] for r in rows[half:-1]] == [r[:2] for r in rows[: half - 1]]


async def test_plain_sql_writers_in_between_traced_writes_keep_no_traceparent(tmp_path: Path) -> None:
    """The tagging runs in the traced write's own transaction: another connection's writes are never tagged."""
    import threading

    from motia_state.telemetry import OPERATION

    path = _file(tmp_path)
    state = StateManager.from_url(_url(path))
    await state.connect()
    stop = threading.Event()

    def plain_writer() -> None:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            i = 0
            while not stop.is_set():
                conn.execute(f"INSERT INTO {TABLE_NAME} (scope, \"key\", value) VALUES ('plain', ?, '1')", (f"p{i}",))
                i += 1
                time.sleep(0.001)  # a tight loop would starve the other writer of SQLite's (unfair) lock
        finally:
            conn.close()

    writer = threading.Thread(target=plain_writer)
    writer.start()
    try:

        async def traced_write(i: int) -> None:
            OPERATION.set(TRACEPARENT)
            await state.set("traced", f"t{i}", i)

        for _ in range(20):
            await asyncio.gather(*(traced_write(i) for i in range(10)))
    finally:
        stop.set()
        writer.join()
        await state.close()
    rows = _query(path, f"SELECT scope, traceparent FROM {CHANGES_TABLE}")
    assert {r for r in rows} == {("plain", None), ("traced", TRACEPARENT)}
    assert len([r for r in rows if r[0] == "plain"]) > 0
