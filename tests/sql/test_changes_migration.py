"""Migration 0002 (the change feed, SPEC §10) on SQLite and Postgres: upgrading a store that holds entries,
what the triggers record for plain-SQL writes, a clean downgrade, no drift, and the history query.

Plain SQL goes through the drivers themselves (sqlite3, asyncpg), as a person with psql or sqlite3 would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from motia_state import StateManager
from motia_state.sql import CHANGES_TABLE, TABLE_NAME, TRIGGER_PARKED_TABLE, TRIGGERS_TABLE, VERSION_TABLE
from motia_state.sql.connect import engine_args, sqlite_path
from motia_state.sql.migrate import current, downgrade, head, include_name, include_object, upgrade
from motia_state.sql.schema import metadata
from motia_state.urls import parse_url

REPO = Path(__file__).resolve().parents[2]
HISTORY = "SELECT * FROM motia_state_changes WHERE scope = ? AND key = ? ORDER BY revision"


def _is_pg(url: str) -> bool:
    return url.startswith("postgres")


async def _sql(url: str, *statements: str, args: tuple[Any, ...] = ()) -> list[list[tuple[Any, ...]]]:
    """Run each statement with the driver itself (autocommit); the rows of each (``?`` placeholders)."""
    out: list[list[tuple[Any, ...]]] = []
    if _is_pg(url):
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(url)
        try:
            for st in statements:
                n = 0
                while "?" in st:  # asyncpg numbers its placeholders
                    n += 1
                    st = st.replace("?", f"${n}", 1)
                out.append([tuple(r) for r in await conn.fetch(st, *args[:n])])
        finally:
            await conn.close()
        return out
    path = sqlite_path(parse_url(url))
    assert path is not None
    lite = sqlite3.connect(path, isolation_level=None)
    try:
        for st in statements:
            out.append(lite.execute(st, args[: st.count("?")]).fetchall())
    finally:
        lite.close()
    return out


async def _history(url: str, scope: str, key: str) -> list[tuple[str, Any, Any]]:
    """The recipe query of SPEC §10: (event, old_value, new_value) of a key, oldest first."""
    rows = (await _sql(url, HISTORY, args=(scope, key)))[0]
    revisions = [r[0] for r in rows]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    return [(r[1], _json(r[4]), _json(r[5])) for r in rows]


def _json(text: Any) -> Any:
    return None if text is None else json.loads(text)


async def _changes(url: str) -> list[tuple[str, str, str, Any, Any]]:
    rows = (
        await _sql(url, f'SELECT event, scope, "key", old_value, new_value FROM {CHANGES_TABLE} ORDER BY revision')
    )[0]
    return [(e, s, k, _json(o), _json(n)) for e, s, k, o, n in rows]


async def _tables(url: str) -> set[str]:
    if _is_pg(url):
        rows = (await _sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))[0]
    else:
        rows = (await _sql(url, "SELECT name FROM sqlite_master WHERE type = 'table'"))[0]
    return {r[0] for r in rows}


async def _triggers(url: str) -> set[str]:
    """The triggers on motia_state (and, on Postgres, the trigger function)."""
    if _is_pg(url):
        pg_rows = await _sql(
            url,
            f"SELECT tgname FROM pg_trigger WHERE tgrelid = '{TABLE_NAME}'::regclass AND NOT tgisinternal",
            "SELECT proname FROM pg_proc WHERE proname = 'motia_state_record_change'",
        )
        return {f"trigger:{r[0]}" for r in pg_rows[0]} | {f"function:{r[0]}" for r in pg_rows[1]}
    sql = f"SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{TABLE_NAME}'"
    return {f"trigger:{r[0]}" for r in (await _sql(url, sql))[0]}


def _insert(url: str, scope: str, key: str, value: Any, *, expires_in_s: int | None = None) -> str:
    """A plain-SQL insert of an entry, in the dialect's own spelling of JSON and time."""
    into = f'INSERT INTO {TABLE_NAME} (scope, "key", value, expires_at) VALUES'
    if expires_in_s is None:
        expires = "NULL"
    elif _is_pg(url):
        expires = f"now() + interval '{expires_in_s} seconds'"
    else:
        expires = f"strftime('%Y-%m-%d %H:%M:%f', 'now', '{expires_in_s:+d} seconds')"
    return f"{into} ('{scope}', '{key}', {_value(url, value)}, {expires})"


def _value(url: str, value: Any) -> str:
    text = json.dumps(value).replace("'", "''")
    return f"'{text}'::jsonb" if _is_pg(url) else f"'{text}'"


async def test_upgrade_from_0001_keeps_the_entries_then_records_writes(sql_url: str) -> None:
    await upgrade(sql_url, "0001")
    assert CHANGES_TABLE not in await _tables(sql_url)
    await _sql(
        sql_url,
        _insert(sql_url, "s", "forever", {"n": 1}),
        _insert(sql_url, "s", "expiring", [1, "two"], expires_in_s=3600),
        _insert(sql_url, "t", "gone", "old", expires_in_s=-60),
    )
    await upgrade(sql_url)
    assert await current(sql_url) == head()
    assert await _changes(sql_url) == []  # the entries already there are state, not changes
    state = StateManager.from_url(sql_url, migrate="check")
    try:
        assert await state.get("s", "forever") == {"n": 1}
        assert await state.get("s", "expiring") == [1, "two"]
        ttl = await state.ttl("s", "expiring")
        assert ttl is not None and 3500 < ttl <= 3600
        assert await state.get("t", "gone") is None
        await state.set("s", "forever", {"n": 2})
        await state.set("t", "gone", "new")  # over an expired row: a new entry
        await state.delete("s", "expiring")
    finally:
        await state.close()
    assert await _changes(sql_url) == [
        ("updated", "s", "forever", {"n": 1}, {"n": 2}),
        ("created", "t", "gone", None, "new"),
        ("deleted", "s", "expiring", [1, "two"], None),
    ]


async def test_plain_sql_writes_are_recorded(sql_url: str) -> None:
    await upgrade(sql_url)
    pg = _is_pg(sql_url)
    past = "now() - interval '1 minute'" if pg else "strftime('%Y-%m-%d %H:%M:%f', 'now', '-60 seconds')"
    k = "key" if pg else '"key"'
    await _sql(
        sql_url,
        _insert(sql_url, "p", "a", {"v": 1}),
        f"UPDATE {TABLE_NAME} SET value = {_value(sql_url, {'v': 2})} WHERE scope = 'p' AND {k} = 'a'",
        f"DELETE FROM {TABLE_NAME} WHERE scope = 'p' AND {k} = 'a'",
        _insert(sql_url, "p", "b", "x"),
        f"UPDATE {TABLE_NAME} SET expires_at = {past} WHERE scope = 'p' AND {k} = 'b'",
        # Overwriting an expired row starts a new entry; deleting one records its expiry.
        f"UPDATE {TABLE_NAME} SET value = {_value(sql_url, 'y')}, expires_at = NULL WHERE scope = 'p' AND {k} = 'b'",
        _insert(sql_url, "p", "c", 3, expires_in_s=-60),
        f"DELETE FROM {TABLE_NAME} WHERE scope = 'p' AND {k} = 'c'",
        # A rename: the old key goes, the new one comes.
        f"UPDATE {TABLE_NAME} SET {k} = 'b2' WHERE scope = 'p' AND {k} = 'b'",
    )
    assert await _changes(sql_url) == [
        ("created", "p", "a", None, {"v": 1}),
        ("updated", "p", "a", {"v": 1}, {"v": 2}),
        ("deleted", "p", "a", {"v": 2}, None),
        ("created", "p", "b", None, "x"),
        ("updated", "p", "b", "x", "x"),  # the expiry set while it was live
        ("created", "p", "b", None, "y"),
        ("created", "p", "c", None, 3),
        ("expired", "p", "c", 3, None),
        ("deleted", "p", "b", "y", None),
        ("created", "p", "b2", None, "y"),
    ]
    # They reach a watch too, whatever wrote them.
    state = StateManager.from_url(sql_url, migrate="check")
    try:
        got = []
        async with state.watch("p", since=0) as changes:
            async for change in changes:
                got.append((change.event, change.key))
                if len(got) == 10:
                    break
        assert got[-1] == ("created", "b2")
    finally:
        await state.close()


async def test_downgrade_removes_the_feed_keeps_the_entries_and_upgrades_again(sql_url: str) -> None:
    await upgrade(sql_url)
    assert await _triggers(sql_url)
    state = StateManager.from_url(sql_url, migrate="check")
    try:
        await state.set("s", "k", {"n": 1})
        await state.set("s", "t", 2, ttl=3600)
    finally:
        await state.close()
    await downgrade(sql_url, "0001")
    assert await current(sql_url) == "0001"
    assert CHANGES_TABLE not in await _tables(sql_url)
    assert await _triggers(sql_url) == set()
    # Plain SQL still writes (no trigger left behind pointing at the dropped table).
    await _sql(sql_url, _insert(sql_url, "s", "plain", True))
    rows = (await _sql(sql_url, f'SELECT scope, "key" FROM {TABLE_NAME} ORDER BY scope, "key"'))[0]
    assert [tuple(r) for r in rows] == [("s", "k"), ("s", "plain"), ("s", "t")]
    await upgrade(sql_url)
    assert await current(sql_url) == head()
    state = StateManager.from_url(sql_url, migrate="check")
    try:
        assert await state.get("s", "k") == {"n": 1}
        assert await state.get("s", "t") == 2
        await state.set("s", "k", {"n": 2})
    finally:
        await state.close()
    assert await _changes(sql_url) == [("updated", "s", "k", {"n": 1}, {"n": 2})]


async def _compare(url: str) -> list[Any]:
    target, args = engine_args(parse_url(url), 10.0)
    engine = create_async_engine(target, poolclass=NullPool, **args)

    def run(connection: sa.Connection) -> list[Any]:
        opts = {
            "compare_type": True,
            "include_name": include_name,
            "include_object": include_object,
            "version_table": VERSION_TABLE,
        }
        return list(compare_metadata(MigrationContext.configure(connection, opts=opts), metadata))

    try:
        async with engine.begin() as conn:
            result: list[Any] = await conn.run_sync(run)
    finally:
        await engine.dispose()
    return result


async def test_no_drift_and_the_comparison_covers_the_changes_table(sql_url: str) -> None:
    await upgrade(sql_url)
    assert await _compare(sql_url) == []
    # Guard against a comparison that skips the table: a missing index of it is reported.
    await _sql(sql_url, "DROP INDEX ix_motia_state_changes_scope_key")
    assert any("ix_motia_state_changes_scope_key" in repr(d) for d in await _compare(sql_url))


def test_alembic_check_finds_nothing(sql_url: str) -> None:
    env = dict(os.environ, MOTIA_STATE_URL=sql_url)
    run = [sys.executable, "-m", "alembic"]
    up = subprocess.run([*run, "upgrade", "head"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    check = subprocess.run([*run, "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


async def test_history_of_a_key_is_one_query(sql_url: str) -> None:
    state = StateManager.from_url(sql_url)
    try:
        await state.set("h", "k", 1)
        await state.set("h", "other", "x")  # interleaved writes of other keys are not in k's history
        await state.set("h", "k", 2)
        await state.set("elsewhere", "k", "no")
        await state.delete("h", "k")
        await state.set("h", "k", {"back": True})
    finally:
        await state.close()
    assert await _history(sql_url, "h", "k") == [
        ("created", None, 1),
        ("updated", 1, 2),
        ("deleted", 2, None),
        ("created", None, {"back": True}),
    ]


# --- migration 0004: the writer's traceparent on every change ------------------------------------------------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _columns(url: str, table: str) -> set[str]:
    if _is_pg(url):
        sql = f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'"
        rows = (await _sql(url, sql + " AND table_schema = current_schema()"))[0]
    else:
        rows = [(r[1],) for r in (await _sql(url, f"PRAGMA table_info({table})"))[0]]
    return {r[0] for r in rows}


async def _function_reads_the_setting(url: str) -> bool:
    """Postgres: whether the trigger function is 0004's (it reads the traced write's setting)."""
    (rows,) = await _sql(url, "SELECT pg_get_functiondef('motia_state_record_change'::regproc)")
    return "motia_state.trace" in rows[0][0]


def _park_row(url: str, revision: int) -> str:
    """A parked change of trigger 't' written with plain SQL (the trigger store's table)."""
    at = "now()" if _is_pg(url) else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    return (
        f'INSERT INTO {TRIGGER_PARKED_TABLE} (name, revision, event, scope, "key", old_value, new_value, at, error,'
        f" attempts) VALUES ('t', {revision}, 'created', 's', 'a', NULL, {_value(url, 1)}, {at}, 'E', 5)"
    )


async def test_0004_adds_the_traceparent_to_a_store_at_0003_and_downgrades_back(sql_url: str) -> None:
    from motia_state.telemetry import OPERATION

    pg = _is_pg(sql_url)
    await upgrade(sql_url, "0003")
    if pg:  # 0002 still installs its own function text, so a database at 0002/0003 is consistent
        assert not await _function_reads_the_setting(sql_url)
    k = "key" if pg else '"key"'
    await _sql(
        sql_url,
        _insert(sql_url, "s", "a", {"n": 1}),
        _insert(sql_url, "s", "b", [2]),
        f"UPDATE {TABLE_NAME} SET value = {_value(sql_url, {'n': 2})} WHERE scope = 's' AND {k} = 'a'",
        f"INSERT INTO {TRIGGERS_TABLE} (name, start_revision, partitions) VALUES ('t', 0, 1)",
        _park_row(sql_url, 1),
    )
    recorded = await _changes(sql_url)
    assert len(recorded) == 3
    await upgrade(sql_url)
    assert await current(sql_url) == "0004" == head()
    assert "traceparent" in await _columns(sql_url, CHANGES_TABLE)
    assert "traceparent" in await _columns(sql_url, TRIGGER_PARKED_TABLE)
    if pg:
        assert await _function_reads_the_setting(sql_url)
    # Nothing lost, and what was there has no traceparent.
    assert await _changes(sql_url) == recorded
    (rows,) = await _sql(
        sql_url, f"SELECT traceparent FROM {CHANGES_TABLE} UNION ALL SELECT traceparent FROM {TRIGGER_PARKED_TABLE}"
    )
    assert rows == [(None,)] * 4
    state = StateManager.from_url(sql_url, migrate="check")
    try:
        token = OPERATION.set(TRACEPARENT)
        try:
            await state.set("s", "a", {"n": 3})
        finally:
            OPERATION.reset(token)
        await _sql(sql_url, f"DELETE FROM {TABLE_NAME} WHERE scope = 's' AND {k} = 'b'")  # plain SQL: no trace
        async with state.watch("s", since=0) as changes:
            got = [await anext(changes) for _ in range(5)]
        (parked,) = (await state.adapter.trigger_store().status())[0].parked  # type: ignore[attr-defined]
    finally:
        await state.close()
    assert [(c.event, c.key, c.traceparent) for c in got] == [
        ("created", "a", None),
        ("created", "b", None),
        ("updated", "a", None),
        ("updated", "a", TRACEPARENT),
        ("deleted", "b", None),
    ]
    assert parked.change.traceparent is None
    newest = got[-1].revision
    await downgrade(sql_url, "0003")
    assert await current(sql_url) == "0003"
    assert "traceparent" not in await _columns(sql_url, CHANGES_TABLE)
    assert "traceparent" not in await _columns(sql_url, TRIGGER_PARKED_TABLE)
    if pg:
        assert not await _function_reads_the_setting(sql_url)
    # The changes are kept, and the trigger of 0003 still records (revisions never reused).
    await _sql(sql_url, _insert(sql_url, "s", "c", True))
    (rows,) = await _sql(sql_url, f"SELECT revision, event, {k} FROM {CHANGES_TABLE} ORDER BY revision")
    assert [r[1:] for r in rows] == [(c.event, c.key) for c in got] + [("created", "c")]
    assert rows[-1][0] > newest
    await upgrade(sql_url)
    assert await current(sql_url) == head()
