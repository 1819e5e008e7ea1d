"""The SQLite backend's operations, run in the worker thread: each is ``fn(conn, now, *args)``.

``now`` is the batch's UTC time as stored text (:func:`ts`): one clock reading per transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ...adapter import Entry, StateItem
from ...ops import Filter, match
from ...values import decode, encode
from .filters import compile_filters
from .statements import (
    CLEANUP_BATCH,
    SQL_CLEANUP,
    SQL_CLEAR,
    SQL_DELETE,
    SQL_DELETE_MANY,
    SQL_DELETE_RETURNING,
    SQL_GET,
    SQL_GET_ENTRY,
    SQL_GET_MANY,
    SQL_GROUPS,
    SQL_KEYS,
    SQL_TTL,
    SQL_UPSERT,
    SQL_VALUES,
    items_query,
)


def ts(t: float) -> str:
    """UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': sorts like time and compares with SQLite's datetime('now')."""
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def live(expires: str | None, now: str) -> bool:
    return expires is None or expires > now


def parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def op_get(conn: sqlite3.Connection, now: str, scope: str, key: str) -> Any:
    row = conn.execute(SQL_GET, (scope, key, now)).fetchone()
    return None if row is None else decode(row[0])


def op_get_entry(conn: sqlite3.Connection, now: str, scope: str, key: str) -> Entry | None:
    row = conn.execute(SQL_GET_ENTRY, (scope, key, now)).fetchone()
    return None if row is None else Entry(decode(row[0]), parse_ts(row[1]))


def op_ttl(conn: sqlite3.Connection, now: str, scope: str, key: str) -> float | None:
    row = conn.execute(SQL_TTL, (scope, key, now)).fetchone()
    if row is None or row[0] is None:
        return None
    expires = parse_ts(row[0])
    assert expires is not None
    return max(expires.timestamp() - time.time(), 0.0)


def op_set(conn: sqlite3.Connection, now: str, scope: str, key: str, text: str, ttl: float | None) -> Any:
    row = conn.execute(SQL_GET, (scope, key, now)).fetchone()
    expires = None if ttl is None else ts(time.time() + ttl)
    conn.execute(SQL_UPSERT, (scope, key, text, expires, now, now))
    return None if row is None else decode(row[0])


def op_delete(conn: sqlite3.Connection, now: str, scope: str, key: str) -> None:
    conn.execute(SQL_DELETE, (scope, key))


def op_delete_entry(conn: sqlite3.Connection, now: str, scope: str, key: str) -> Any:
    rows = conn.execute(SQL_DELETE_RETURNING, (scope, key)).fetchall()
    return decode(rows[0][0]) if rows and live(rows[0][1], now) else None


def op_update(
    conn: sqlite3.Connection, now: str, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
) -> tuple[Any, Any]:
    # Runs inside BEGIN IMMEDIATE: no other process can write between this read and the upsert.
    row = conn.execute(SQL_GET_ENTRY, (scope, key, now)).fetchone()
    old = None if row is None else decode(row[0])
    # apply gets its own copy so that the returned old value cannot be altered by it; raises -> no write.
    new = apply(None if row is None else decode(row[0]))
    # An existing entry keeps its expiry; a new one gets ttl_if_new.
    fresh = None if ttl_if_new is None else ts(time.time() + ttl_if_new)
    expires = fresh if row is None else row[1]
    conn.execute(SQL_UPSERT, (scope, key, encode(new), expires, now, now))
    return old, new


def op_clear(conn: sqlite3.Connection, now: str, scope: str) -> int:
    return sum(1 for (expires,) in conn.execute(SQL_CLEAR, (scope,)).fetchall() if live(expires, now))


def op_keys(conn: sqlite3.Connection, now: str, scope: str) -> list[str]:
    return [k for (k,) in conn.execute(SQL_KEYS, (scope, now))]


def op_groups(conn: sqlite3.Connection, now: str) -> list[str]:
    return [s for (s,) in conn.execute(SQL_GROUPS, (now,))]


def op_values(conn: sqlite3.Connection, now: str, scope: str) -> list[Any]:
    return [decode(v) for (v,) in conn.execute(SQL_VALUES, (scope, now))]


def op_items(
    conn: sqlite3.Connection,
    now: str,
    scope: str | None,
    filters: Sequence[Filter],
    limit: int | None,
    after: str | None = None,
) -> list[StateItem]:
    cond, params, recheck = compile_filters(filters)
    sql, args = items_query(now, scope, after, cond, params, None if recheck else limit)
    out: list[StateItem] = []
    if limit is not None and limit <= 0:
        return out
    for s, k, text, expires in conn.execute(sql, args):
        value = decode(text)
        if recheck and not match(value, recheck):
            continue
        out.append(StateItem(s, k, value, parse_ts(expires)))
        if limit is not None and len(out) >= limit:
            break
    return out


def op_get_many(conn: sqlite3.Connection, now: str, scope: str, keys_json: str) -> dict[str, Any]:
    return {k: decode(v) for k, v in conn.execute(SQL_GET_MANY, (scope, keys_json, now))}


def op_set_many(conn: sqlite3.Connection, now: str, scope: str, rows: list[tuple[str, str]], ttl: float | None) -> None:
    expires = None if ttl is None else ts(time.time() + ttl)
    conn.executemany(SQL_UPSERT, [(scope, k, text, expires, now, now) for k, text in rows])


def op_delete_many(conn: sqlite3.Connection, now: str, scope: str, keys_json: str) -> int:
    rows = conn.execute(SQL_DELETE_MANY, (scope, keys_json)).fetchall()
    return sum(1 for (expires,) in rows if live(expires, now))


def op_cleanup(conn: sqlite3.Connection, now: str) -> int:
    # Bounded batches, each its own short write transaction: other processes get the lock in between.
    removed = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(SQL_CLEANUP, (now, CLEANUP_BATCH)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        removed += max(n, 0)
        if n < CLEANUP_BATCH:
            return removed


def rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
