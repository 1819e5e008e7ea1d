"""The Postgres change feed (SPEC §10): the trigger records plain SQL writes, revisions follow commit order,
``changes: off`` is the trigger's switch, compaction, and the LISTEN wake-up across processes.

Each test has its own database: some switch the store-wide trigger, some count the server's connections.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from motia_state import Change, ChangesCompactedError, ChangeStream, StateConfigError, StateManager
from motia_state.backends.postgres import PostgresAdapter
from tests.services import create_private_pg_database, drop_private_pg_database, pg_url_of, require

pytestmark = pytest.mark.postgres

PG_PREFIX = "motia_state_feed_pg_"
READ_WITHIN = 10.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def db() -> AsyncIterator[str]:
    """The URL of a private, migrated database (dropped afterwards)."""
    require("postgres")
    name = await create_private_pg_database(PG_PREFIX)
    try:
        url = pg_url_of(name)
        state = StateManager.from_url(url)
        await state.connect()
        await state.close()
        yield url
    finally:
        await drop_private_pg_database(name, PG_PREFIX)


@pytest.fixture
async def state(db: str) -> AsyncIterator[StateManager]:
    store = StateManager.from_url(db)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def sql(db: str) -> AsyncIterator[Any]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(db)
    try:
        yield conn
    finally:
        await conn.close()


async def take(changes: ChangeStream, n: int) -> list[Change]:
    return [await asyncio.wait_for(anext(changes), READ_WITHIN) for _ in range(n)]


def summary(changes: list[Change]) -> list[tuple[str, str, str, Any, Any]]:
    return [(c.event, c.scope, c.key, c.old_value, c.new_value) for c in changes]


async def recorded(sql: Any) -> int:
    return int(await sql.fetchval("SELECT count(*) FROM motia_state_changes"))


async def test_plain_sql_writes_are_watched(state: StateManager, sql: Any) -> None:
    async with state.watch() as changes:
        await sql.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', 'a', '{\"n\": 1}')")
        await sql.execute("UPDATE motia_state SET value = '[1, \"two\"]' WHERE scope = 's' AND key = 'a'")
        async with sql.transaction():
            await sql.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', 'b', 'null'), ('t', 'c', '3')")
            await sql.execute("UPDATE motia_state SET value = '4' WHERE scope = 't' AND key = 'c'")
            await sql.execute("DELETE FROM motia_state WHERE scope = 's' AND key = 'a'")
        await sql.execute(
            "INSERT INTO motia_state (scope, key, value, expires_at)"
            " VALUES ('s', 'old', '\"x\"', now() - interval '1 s')"
        )
        await sql.execute("DELETE FROM motia_state WHERE key = 'old'")
        await sql.execute("UPDATE motia_state SET key = 'b2' WHERE scope = 's' AND key = 'b'")
        got = await take(changes, 10)
    assert summary(got) == [
        ("created", "s", "a", None, {"n": 1}),
        ("updated", "s", "a", {"n": 1}, [1, "two"]),
        ("created", "s", "b", None, None),  # a JSON null value: new_value None, still a "created"
        ("created", "t", "c", None, 3),
        ("updated", "t", "c", 3, 4),
        ("deleted", "s", "a", [1, "two"], None),
        ("created", "s", "old", None, "x"),
        ("expired", "s", "old", "x", None),
        ("deleted", "s", "b", None, None),
        ("created", "s", "b2", None, None),
    ]
    assert [c.revision for c in got] == sorted({c.revision for c in got})
    # The transaction's changes committed together: their times are those of one commit.
    assert all(c.at.utcoffset() is not None and c.at.utcoffset().total_seconds() == 0 for c in got)  # type: ignore[union-attr]
    assert await state.revision() == got[-1].revision
    assert await state.revision("t") == got[4].revision
    history = await sql.fetch("SELECT event FROM motia_state_changes WHERE scope = 't' AND key = 'c' ORDER BY revision")
    assert [r[0] for r in history] == ["created", "updated"]


async def test_a_late_commit_is_delivered_after_an_earlier_one_exactly_once(db: str, state: StateManager) -> None:
    """A writes first but commits after B: revisions follow commit order, so a watcher that already
    delivered B's change still gets A's (reading "revision > last" skips nothing)."""
    import asyncpg

    a, b = await asyncpg.connect(db), await asyncpg.connect(db)
    try:
        async with state.watch("s") as changes:
            ta = a.transaction()
            await ta.start()
            await a.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', 'a', '1')")
            await b.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', 'b', '2')")  # commits now
            first = await asyncio.wait_for(anext(changes), READ_WITHIN)
            assert first.key == "b"
            with pytest.raises(TimeoutError):  # A is not committed: nothing more to see yet
                await asyncio.wait_for(anext(changes), 0.3)
            await ta.commit()
            second = await asyncio.wait_for(anext(changes), READ_WITHIN)
            await state.set("s", "end", True)
            third = await asyncio.wait_for(anext(changes), READ_WITHIN)
        assert (second.key, third.key) == ("a", "end")
        assert first.revision < second.revision < third.revision
        async with state.watch("s", since=0) as replay:
            assert [c.key for c in await take(replay, 3)] == ["b", "a", "end"]
    finally:
        await a.close()
        await b.close()


async def test_many_interleaved_transactions_are_each_delivered_once(db: str, state: StateManager) -> None:
    import asyncpg

    conns = [await asyncpg.connect(db) for _ in range(6)]
    try:
        async with state.watch("s") as changes:

            async def writer(w: int, conn: Any) -> None:
                for i in range(15):
                    async with conn.transaction():
                        await conn.execute(
                            "INSERT INTO motia_state (scope, key, value) VALUES ('s', $1, $2::jsonb)",
                            f"w{w}-{i}",
                            str(i),
                        )
                        await asyncio.sleep(0.001 * ((w + i) % 3))

            await asyncio.gather(*(writer(w, c) for w, c in enumerate(conns)))
            got = await take(changes, 90)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(changes), 0.3)
        assert sorted(c.key for c in got) == sorted(f"w{w}-{i}" for w in range(6) for i in range(15))
        assert all(a.revision < b.revision for a, b in itertools.pairwise(got))
    finally:
        for conn in conns:
            await conn.close()


async def test_changes_off_disables_the_trigger_for_the_store_and_on_enables_it(
    db: str, sql: Any, caplog: pytest.LogCaptureFixture
) -> None:
    trigger = "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'motia_state_record_change'"
    off = StateManager.from_url(db, changes=False)
    try:
        with caplog.at_level(logging.WARNING, logger="motia_state"):
            await off.set("s", "k", 1)
        assert any("every process" in r.getMessage() for r in caplog.records)
        assert await sql.fetchval(trigger) == "D"
        await off.set("s", "k", 2)
        await sql.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', 'plain', '1')")
        await off.delete("s", "k")
        assert await recorded(sql) == 0
        with pytest.raises(StateConfigError, match="changes"):
            off.watch()
    finally:
        await off.close()
    # A second manager with changes off finds the trigger already off: no switch, no warning.
    caplog.clear()
    again = StateManager.from_url(db, changes=False)
    try:
        with caplog.at_level(logging.WARNING, logger="motia_state"):
            await again.connect()
        assert not caplog.records
    finally:
        await again.close()
    on = StateManager.from_url(db)
    try:
        with caplog.at_level(logging.WARNING, logger="motia_state"):
            await on.connect()
        assert any("enabled" in r.getMessage() for r in caplog.records)
        assert await sql.fetchval(trigger) == "O"
        async with on.watch("s") as changes:
            await sql.execute("UPDATE motia_state SET value = '5' WHERE key = 'plain'")
            change = await asyncio.wait_for(anext(changes), READ_WITHIN)
        assert (change.event, change.old_value, change.new_value) == ("updated", 1, 5)
        assert await recorded(sql) == 1
    finally:
        await on.close()


async def test_changes_off_without_the_right_to_alter_the_table_says_what_to_grant(db: str) -> None:
    import asyncpg

    role = f"motia_state_feed_user_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
        url = db.replace("postgresql://postgres@", f"postgresql://{role}@")
        store = StateManager.from_url(url, changes=False)
        try:
            with pytest.raises(StateConfigError, match=r"owner.*DISABLE TRIGGER|DISABLE TRIGGER.*owner"):
                await store.connect()
        finally:
            await store.close()
        # With changes on (the trigger's state already), no switch is needed: the user can work.
        store = StateManager.from_url(url)
        try:
            await store.set("s", "k", 1)
            assert await store.revision() >= 1
        finally:
            await store.close()
    finally:
        await admin.execute(f"REASSIGN OWNED BY {role} TO postgres")
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.close()
        cleanup = await asyncpg.connect(pg_url_of("postgres"))
        try:
            await cleanup.execute(f"DROP ROLE IF EXISTS {role}")
        finally:
            await cleanup.close()


async def test_compaction_deletes_old_changes_in_batches_but_keeps_the_newest(db: str, sql: Any) -> None:
    old = "INSERT INTO motia_state_changes (event, scope, key, new_value, at) SELECT 'created', 's',"
    days_ago = "now() - interval '2 days' FROM generate_series"
    await sql.execute(f"{old} 'k' || i, to_jsonb(i), {days_ago}(1, 12001) i")
    store = StateManager.from_url(db, changes_retention=3600)
    try:
        newest = await store.revision()
        assert await store.cleanup() == 0  # the count is of expired entries, not of changes
        assert await sql.fetch("SELECT revision FROM motia_state_changes") == [(newest,)]
        # The floor stays right: the newest change is kept, so a scope without changes starts just below it.
        assert await store.revision() == newest
        assert await store.revision("nothing-here") == newest - 1
        with pytest.raises(ChangesCompactedError) as raised:
            async with store.watch(since=10) as changes:
                await anext(changes)
        assert raised.value.oldest == newest
        async with store.watch(since=newest - 1) as changes:
            assert (await asyncio.wait_for(anext(changes), READ_WITHIN)).revision == newest

        # Old changes beyond a batch and recent ones: only the old go; many cleaners at once agree.
        await sql.execute(f"{old} 'o' || i, 'null', {days_ago}(1, 7000) i")
        for i in range(5):
            await store.set("s", f"recent{i}", i)
        cleaners = [StateManager.from_url(db, changes_retention=3600) for _ in range(4)]
        try:
            await asyncio.gather(*(c.cleanup() for c in cleaners))
        finally:
            for c in cleaners:
                await c.close()
        keys = [r[0] for r in await sql.fetch("SELECT key FROM motia_state_changes ORDER BY revision")]
        assert keys == [f"recent{i}" for i in range(5)]
    finally:
        await store.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from motia_state import StateManager

    async def main() -> None:
        state = StateManager.from_url(sys.argv[1], migrate="off")
        try:
            await state.set("xp", "first", 1)
            time.sleep(1.0)  # the watcher is now in a fresh wait: only a LISTEN wake-up ends it early
            await state.set("xp", "second", 2)
        finally:
            await state.close()

    asyncio.run(main())
    """
)


@pytest.mark.timeout(120)
async def test_a_change_from_another_process_arrives_quickly(state: StateManager, db: str) -> None:
    async with state.watch("xp") as changes:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, db, env=env)
        try:
            first = await asyncio.wait_for(anext(changes), 60)
            second = await asyncio.wait_for(anext(changes), 60)
            received = datetime.now(UTC)
        finally:
            assert await asyncio.wait_for(child.wait(), 60) == 0
    assert (first.key, second.key) == ("first", "second")
    # The stream's own fallback read comes 5 s after the previous one: 3 s only holds with the wake-up.
    assert (received - second.at).total_seconds() < 3.0


async def _connections(sql: Any, db: str) -> int:
    return int(
        await sql.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            db.rsplit("/", 1)[1],
        )
    )


async def _settle(sql: Any, db: str, want: int) -> int:
    """The connection count once it reaches ``want`` (a closed backend takes a moment to leave)."""
    n = -1
    for _ in range(50):
        n = await _connections(sql, db)
        if n == want:
            break
        await asyncio.sleep(0.05)
    return n


async def test_one_listener_per_adapter_closed_with_it(state: StateManager, sql: Any, db: str) -> None:
    await state.set("s", "k", 1)
    adapter = state.adapter
    assert isinstance(adapter, PostgresAdapter)
    pooled = await _connections(sql, db)
    assert adapter._listener.conn is None  # opened lazily, on the first wait
    async with state.watch("s") as one, state.watch() as two:
        for stream in (one, two):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(stream), 0.5)
        assert adapter._listener.conn is not None
        assert await _connections(sql, db) <= pooled + 1 + 1  # one listener; the pool may grow by one
        await state.set("s", "k", 2)
        assert (await asyncio.wait_for(anext(one), READ_WITHIN)).new_value == 2
        assert (await asyncio.wait_for(anext(two), READ_WITHIN)).new_value == 2
    await state.close()
    assert await _settle(sql, db, 0) == 0


async def test_a_lost_listener_is_replaced_and_changes_keep_arriving(state: StateManager, sql: Any) -> None:
    adapter = state.adapter
    assert isinstance(adapter, PostgresAdapter)
    async with state.watch("s") as changes:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.5)
        listener = adapter._listener.conn
        assert listener is not None
        await sql.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        await asyncio.sleep(0.2)
        start = time.monotonic()
        await sql.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', 'a', '1')")
        assert (await asyncio.wait_for(anext(changes), READ_WITHIN)).key == "a"
        assert time.monotonic() - start < 1.0
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 0.5)
        assert adapter._listener.conn is not None and adapter._listener.conn is not listener
        start = time.monotonic()
        await sql.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', 'b', '1')")
        assert (await asyncio.wait_for(anext(changes), READ_WITHIN)).key == "b"
        assert time.monotonic() - start < 1.0


async def test_read_errors_are_backend_errors(state: StateManager, sql: Any) -> None:
    from motia_state import StateBackendError

    adapter = state.adapter
    assert isinstance(adapter, PostgresAdapter)
    await state.connect()
    await sql.execute("ALTER TABLE motia_state_changes RENAME TO motia_state_changes_away")
    try:
        with pytest.raises(StateBackendError, match="motia_state_changes table is missing"):
            await adapter.changes_after(None, None, 0, 10, 0.0)
        with pytest.raises(StateBackendError, match="motia_state_changes table is missing"):
            await adapter.changes_after("s", "k", 0, 10, 0.5)
        with pytest.raises(StateBackendError):
            await adapter.revision("s")
    finally:
        await sql.execute("ALTER TABLE motia_state_changes_away RENAME TO motia_state_changes")


async def test_an_idle_watch_does_not_spin(state: StateManager) -> None:
    adapter = state.adapter
    assert isinstance(adapter, PostgresAdapter)
    await state.connect()
    reads = 0
    read = adapter._read_changes

    async def counting(*args: Any) -> list[Change]:
        nonlocal reads
        reads += 1
        return await read(*args)

    adapter._read_changes = counting  # type: ignore[method-assign]
    async with state.watch("s") as changes:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 2.0)
    # The first read, one more once LISTEN is up (it may have missed a commit), then asleep until a wake-up.
    assert reads <= 4


async def test_without_a_listen_connection_changes_still_arrive_within_a_second(state: StateManager, sql: Any) -> None:
    adapter = state.adapter
    assert isinstance(adapter, PostgresAdapter)
    await state.connect()
    attempts = 0

    async def refused() -> Any:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError("no LISTEN here (e.g. PgBouncer in transaction mode)")

    adapter._listener._open = refused
    async with state.watch("s") as changes:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(changes), 1.5)
        for i in range(3):
            start = time.monotonic()
            await sql.execute("INSERT INTO motia_state (scope, key, value) VALUES ('s', $1, '1')", f"k{i}")
            assert (await asyncio.wait_for(anext(changes), READ_WITHIN)).key == f"k{i}"
            assert time.monotonic() - start < 1.0
    assert 1 <= attempts <= 5  # retried about once a second, not at every poll
