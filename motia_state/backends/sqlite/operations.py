"""The SQLite backend's operations, run in the worker thread: each is ``fn(conn, now, *args)``.

``now`` is the batch's UTC time as stored text (:func:`ts`): one clock reading per transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from ...adapter import Entry, StateItem
from ...changes import Change, Event, log_compaction
from ...errors import ChangesCompactedError
from ...ops import Filter, match
from ...sql.feed import SQLITE_CREATE, SQLITE_DROP, SQLITE_TRIGGERS
from ...values import decode, encode
from .filters import compile_filters
from .statements import (
    CLEANUP_BATCH,
    COMPACT_BATCH,
    SQL_CHANGES_MAX,
    SQL_CHANGES_MIN,
    SQL_CLEANUP,
    SQL_CLEAR_EXPIRED,
    SQL_CLEAR_SCOPE,
    SQL_COMPACT,
    SQL_DELETE,
    SQL_DELETE_MANY,
    SQL_DELETE_RETURNING,
    SQL_FEED_OBJECTS,
    SQL_GET,
    SQL_GET_ENTRY,
    SQL_GET_MANY,
    SQL_GROUPS,
    SQL_KEY_HISTORY,
    SQL_KEYS,
    SQL_LAST_REVISION,
    SQL_SCOPE_REVISION,
    SQL_TRACE_CHANGES,
    SQL_TTL,
    SQL_UPSERT,
    SQL_VALUES_ARRAY,
    UPSERT_ROWS,
    changes_query,
    items_query,
    scopes_query,
    upsert_rows,
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


def op_set(conn: sqlite3.Connection, now: str, scope: str, key: str, text: str, ttl: float | None) -> str | None:
    """Write; return the old live value's text (the caller decodes it, out of the worker thread)."""
    row = conn.execute(SQL_GET, (scope, key, now)).fetchone()
    expires = None if ttl is None else ts(time.time() + ttl)
    conn.execute(SQL_UPSERT, (scope, key, text, expires, now, now))
    return None if row is None else cast(str, row[0])


def op_set_batch(conn: sqlite3.Connection, now: str, calls: Sequence[tuple[Any, ...]]) -> list[tuple[bool, Any]]:
    """Consecutive op_set calls of one batch (their args, in call order): one read of the old values, then
    one ``executemany`` of the upsert.

    The old values of all their keys come from one SELECT per scope; walking the calls in order, each gets the
    text its own write replaces (a key written twice: the second gets the first's new text). The rows are then
    upserted in call order, so the feed's triggers record each write's change in that order. (One multi-row
    upsert measured slower per row than executemany of the one-row statement.)
    """
    wanted: dict[str, list[str]] = {}
    for scope, key, _, _ in calls:
        wanted.setdefault(scope, []).append(key)
    current: dict[tuple[str, str], str] = {}
    for scope, keys in wanted.items():
        for k, v in conn.execute(SQL_GET_MANY, (scope, json.dumps(keys), now)):
            current[scope, k] = v
    clock = time.time()
    results: list[tuple[bool, Any]] = []
    rows: list[tuple[Any, ...]] = []
    for scope, key, text, ttl in calls:
        results.append((True, current.get((scope, key))))
        current[scope, key] = text
        rows.append((scope, key, text, None if ttl is None else ts(clock + ttl), now, now))
    conn.executemany(SQL_UPSERT, rows)
    return results


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
    # In the batch's write transaction: nothing can expire or be written between the count and the delete.
    (expired,) = conn.execute(SQL_CLEAR_EXPIRED, (scope, now)).fetchone()
    return int(conn.execute(SQL_CLEAR_SCOPE, (scope,)).rowcount) - int(expired)


def op_keys(conn: sqlite3.Connection, now: str, scope: str) -> list[str]:
    return [k for (k,) in conn.execute(SQL_KEYS, (scope, now))]


def op_groups(conn: sqlite3.Connection, now: str) -> list[str]:
    return [s for (s,) in conn.execute(SQL_GROUPS, (now,))]


def op_scopes_page(conn: sqlite3.Connection, now: str, after: str | None, limit: int, search: str | None) -> list[str]:
    sql, args = scopes_query(now, after, search, limit)
    # Sorted here too: the query yields scope order by how it runs, not by an ORDER BY.
    return sorted(s for (s,) in conn.execute(sql, args))


def op_values_text(conn: sqlite3.Connection, now: str, scope: str) -> str | None:
    """The live values of ``scope`` in key order as one JSON array text (None: no live entry).

    A str, immutable: identical lists of one batch share it, and each caller decodes its own objects.
    """
    return cast("str | None", conn.execute(SQL_VALUES_ARRAY, (scope, now)).fetchone()[0])


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


def op_set_many(conn: sqlite3.Connection, now: str, scope: str, flat: list[str], ttl: float | None) -> None:
    """Upsert the rows of ``flat`` (key, value text, key, value text...) in statements of up to UPSERT_ROWS rows."""
    expires = None if ttl is None else ts(time.time() + ttl)
    shared: list[Any] = [scope, expires, now]
    start, end = 0, len(flat)
    while start < end:
        n = min(UPSERT_ROWS, 1 << (((end - start) // 2).bit_length() - 1))  # the largest power of two that fits
        stop = start + 2 * n
        conn.execute(upsert_rows(n), shared + flat[start:stop])
        start = stop


def op_delete_many(conn: sqlite3.Connection, now: str, scope: str, keys_json: str) -> int:
    rows = conn.execute(SQL_DELETE_MANY, (scope, keys_json)).fetchall()
    return sum(1 for (expires,) in rows if live(expires, now))


def op_traced(conn: sqlite3.Connection, now: str, trace: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(conn, now, *args)``, a write of an operation traced as ``trace``: its changes get the traceparent.

    Runs in the write transaction of the batch (SQLite's one writer: no other write comes in between), so the
    changes after the counter read first are exactly this write's.
    """
    row = conn.execute(SQL_LAST_REVISION).fetchone()
    result = fn(conn, now, *args)
    conn.execute(SQL_TRACE_CHANGES, (trace, 0 if row is None else row[0]))
    return result


def op_cleanup(conn: sqlite3.Connection, now: str, retention: float | None = None, trace: str | None = None) -> int:
    """Delete the expired entries, then (``retention`` given) the changes older than it; count the entries.

    ``trace``: the traceparent of the traced operation, given to the ``expired`` changes it records.
    """
    # Bounded batches, each its own short write transaction: other processes get the lock in between.
    removed = 0
    while True:
        n = _in_transaction(conn, SQL_CLEANUP, (now, CLEANUP_BATCH), trace)
        removed += max(n, 0)
        if n < CLEANUP_BATCH:
            break
    if retention is not None:
        # The triggers' text format (milliseconds): truncated, so a change is kept at least ``retention``.
        cutoff = ts(time.time() - retention)[:23]
        compacted = 0
        while True:
            n = _in_transaction(conn, SQL_COMPACT, (COMPACT_BATCH, cutoff))
            compacted += max(n, 0)
            if n < COMPACT_BATCH:
                break
        if compacted:
            log_compaction(conn.execute("PRAGMA database_list").fetchone()[2] or ":memory:", compacted, retention)
    return removed


def _in_transaction(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...], trace: str | None = None) -> int:
    """Run one statement in its own write transaction (traced as ``trace``: see op_traced); return its rowcount."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        n: int = op_traced(conn, "", trace, _rowcount, sql, args) if trace else conn.execute(sql, args).rowcount
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return n


def _rowcount(conn: sqlite3.Connection, now: str, sql: str, args: tuple[Any, ...]) -> int:
    return int(conn.execute(sql, args).rowcount)


# --- the change feed ----------------------------------------------------------------------------------


def op_data_version(conn: sqlite3.Connection, now: str) -> int:
    """SQLite's counter of commits made by OTHER connections (reads no table)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def op_revision(conn: sqlite3.Connection, now: str, scope: str | None) -> int:
    """The last revision (of ``scope``); with none, the floor: min(revision) - 1 (0 for an empty table)."""
    if scope is None:
        (newest,) = conn.execute(SQL_CHANGES_MAX).fetchone()
    else:
        (newest,) = conn.execute(SQL_SCOPE_REVISION, (scope,)).fetchone()
    if newest is not None:
        return int(newest)
    # Read after the max: a compaction in between only raises the floor, never leaves it too low.
    (oldest,) = conn.execute(SQL_CHANGES_MIN).fetchone()
    return 0 if oldest is None else int(oldest) - 1


def op_changes_after(
    conn: sqlite3.Connection,
    now: str,
    scope: str | None,
    key: str | None,
    after: int,
    start: int,
    limit: int,
) -> tuple[int, list[Change], int | None]:
    """``(data_version, changes, scanned_to)``: the changes after ``start`` (>= ``after``, below it this
    reader already found nothing), and, when fewer than ``limit`` came, the last revision the read covered.

    ChangesCompactedError when changes after ``after`` were compacted away.
    """
    # One read snapshot for these statements (a compaction in between cannot open an unseen gap), and
    # data_version read first: a commit by another process after it is either in this read or changes it.
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        (oldest,) = conn.execute(SQL_CHANGES_MIN).fetchone()
        if oldest is not None and after < oldest - 1:
            raise ChangesCompactedError(after, int(oldest))
        sql, args = changes_query(scope, key, start, limit)
        rows = conn.execute(sql, args).fetchall()
        scanned_to: int | None = None
        if len(rows) < limit:
            (newest,) = conn.execute(SQL_CHANGES_MAX).fetchone()
            scanned_to = None if newest is None else int(newest)
    finally:
        if own:
            rollback(conn)  # nothing was written: ending the read transaction is all that is left
    return version, [_change(row) for row in rows], scanned_to


# Above every revision (SQLite's largest integer): ``revision < _NO_BOUND`` keeps them all.
_NO_BOUND = 2**63 - 1


def op_key_history(
    conn: sqlite3.Connection, now: str, scope: str, key: str, before: int | None, limit: int
) -> list[Change]:
    """The retained changes of ``scope``/``key`` below ``before``, newest first, at most ``limit``."""
    below = _NO_BOUND if before is None else before
    return [_change(row) for row in conn.execute(SQL_KEY_HISTORY, (scope, key, below, limit))]


def _change(row: Any) -> Change:
    """A change from a row (revision, event, scope, key, old_value, new_value, at, traceparent)."""
    rev, event, s, k, old, new, at, trace = row
    stamp = parse_ts(at)
    assert stamp is not None  # NOT NULL column
    old_value = None if old is None else decode(old)
    new_value = None if new is None else decode(new)
    return Change(rev, cast(Event, event), s, k, old_value, new_value, stamp, trace)


#: Operations that consecutive calls of one batch run as one: ``op -> batched(conn, now, [args...])``, which
#: returns each call's (ok, result) in order.
Batched = Callable[[sqlite3.Connection, str, Sequence[tuple[Any, ...]]], list[tuple[bool, Any]]]
MERGED: dict[Callable[..., Any], Batched] = {op_set: op_set_batch}
#: Reads whose result is immutable (text): identical calls of one batch with no write between them read once
#: and share the answer.
SHARED: frozenset[Callable[..., Any]] = frozenset({op_values_text})


def op_feed_triggers(conn: sqlite3.Connection, now: str, on: bool) -> str | None:
    """Make the feed's triggers exist (``on``) or not; return "created"/"dropped" when that changed anything.

    A schema before the changes table (migration 0002) is left alone.
    """
    rows = conn.execute(SQL_FEED_OBJECTS).fetchall()
    if not any(kind == "table" for kind, _ in rows):
        return None
    have = {name for kind, name in rows if kind == "trigger"} & SQLITE_TRIGGERS.keys()
    if (on and have == SQLITE_TRIGGERS.keys()) or (not on and not have):
        return None
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SQLITE_CREATE if on else SQLITE_DROP:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return "created" if on else "dropped"


def rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
