"""The SQLite backend's SQL, written once (sqlite3's statement cache prepares each text once)."""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from ...sql import CHANGES_TABLE, TABLE_NAME

__all__ = [
    "CLEANUP_BATCH",
    "COMPACT_BATCH",
    "LIVE",
    "UPSERT_ROWS",
    "changes_query",
    "items_query",
    "scopes_query",
    "upsert_rows",
]  # and the SQL_* statements

LIVE: Final = "(expires_at IS NULL OR expires_at > ?)"
SQL_GET: Final = f'SELECT value FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? AND {LIVE}'
SQL_GET_ENTRY: Final = f'SELECT value, expires_at FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? AND {LIVE}'
SQL_TTL: Final = f'SELECT expires_at FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? AND {LIVE}'
_UPSERT_HEAD: Final = f'INSERT INTO {TABLE_NAME} (scope, "key", value, expires_at, created_at, updated_at) VALUES '
# created_at is kept on overwrite, unless the row being replaced had already expired (then it is new).
_UPSERT_CONFLICT: Final = (
    'ON CONFLICT (scope, "key") DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, '
    "updated_at = excluded.updated_at, created_at = CASE WHEN "
    f"{TABLE_NAME}.expires_at IS NOT NULL AND {TABLE_NAME}.expires_at <= excluded.updated_at "
    f"THEN excluded.created_at ELSE {TABLE_NAME}.created_at END"
)
SQL_UPSERT: Final = f"{_UPSERT_HEAD}(?, ?, ?, ?, ?, ?) {_UPSERT_CONFLICT}"
# Rows per statement of set_many: one statement opens its cursors once for all its rows (several times faster
# than executemany's statement per row). 256 rows take 515 parameters, under the 999 of SQLite before 3.32.
UPSERT_ROWS: Final = 256


@cache
def upsert_rows(n: int) -> str:
    """The upsert of ``n`` rows of one scope: ?1 scope, ?2 expires_at, ?3 now, then each row's key and value.

    set_many sends power-of-two row counts only, so a handful of texts are ever built (and prepared).
    """
    rows = ",".join(f"(?1, ?{4 + 2 * i}, ?{5 + 2 * i}, ?2, ?3, ?3)" for i in range(n))
    return f"{_UPSERT_HEAD}{rows} {_UPSERT_CONFLICT}"


SQL_DELETE: Final = f'DELETE FROM {TABLE_NAME} WHERE scope = ? AND "key" = ?'
# RETURNING gives plain columns only: SQLite 3.40 evaluates `expires_at IS NULL` wrongly there, so the
# liveness of deleted rows is decided in Python.
SQL_DELETE_RETURNING: Final = f'DELETE FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? RETURNING value, expires_at'
# clear(): the scope's expired rows counted (?: now), then a plain DELETE, whose rowcount less them is the
# live count; half the cost of RETURNING a row per entry. "+expires_at": the primary key index serves the
# scope, never the expiry index (every expired row of the store).
SQL_CLEAR_EXPIRED: Final = f"SELECT count(*) FROM {TABLE_NAME} WHERE scope = ? AND +expires_at <= ?"
SQL_CLEAR_SCOPE: Final = f"DELETE FROM {TABLE_NAME} WHERE scope = ?"
SQL_CLEANUP: Final = (
    f"DELETE FROM {TABLE_NAME} WHERE rowid IN (SELECT rowid FROM {TABLE_NAME} "
    "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)"
)
SQL_KEYS: Final = f'SELECT "key" FROM {TABLE_NAME} WHERE scope = ? AND {LIVE} ORDER BY "key"'
SQL_GROUPS: Final = f"SELECT DISTINCT scope FROM {TABLE_NAME} WHERE {LIVE} ORDER BY scope"
# A scope holds a live row: one probe of the primary key index (?: now), for each candidate of a page of scopes.
_HAS_LIVE: Final = f"(SELECT 1 FROM {TABLE_NAME} AS m WHERE m.scope = c.scope AND {LIVE} LIMIT 1)"
SQL_VALUES: Final = f'SELECT value FROM {TABLE_NAME} WHERE scope = ? AND {LIVE} ORDER BY "key"'
# list(): the same rows as ONE JSON array text (NULL for none), one string to fetch and one decode per caller.
# The ordered subquery is not flattened into an aggregate (SQLite keeps it as a co-routine reading the primary
# key in key order), so group_concat sees the rows in key order; 3.40 has no ORDER BY inside the aggregate.
SQL_VALUES_ARRAY: Final = (
    f"SELECT '[' || group_concat(value, ',') || ']' FROM (SELECT value FROM {TABLE_NAME} WHERE scope = ? AND {LIVE}"
    ' ORDER BY "key")'
)
# A JSON array of keys is one parameter: one statement text whatever the number of keys.
# The head of an items() query: the filters, scope and key range are appended to it.
SQL_ITEMS: Final = (
    f'SELECT s.scope, s."key", s.value, s.expires_at FROM {TABLE_NAME} AS s'
    " WHERE (s.expires_at IS NULL OR s.expires_at > ?)"
)
SQL_GET_MANY: Final = (
    f'SELECT "key", value FROM {TABLE_NAME} WHERE scope = ? AND "key" IN (SELECT value FROM json_each(?)) AND {LIVE}'
)
SQL_DELETE_MANY: Final = (
    f'DELETE FROM {TABLE_NAME} WHERE scope = ? AND "key" IN (SELECT value FROM json_each(?)) RETURNING expires_at'
)

CLEANUP_BATCH: Final = 1000


def items_query(
    now: str, scope: str | None, after: str | None, cond: str, params: list[Any], limit: int | None
) -> tuple[str, list[Any]]:
    """An items() query: live rows of ``scope`` (or all) with keys after ``after``, passing ``cond``."""
    sql = SQL_ITEMS
    args: list[Any] = [now]
    if scope is not None:
        sql += " AND s.scope = ?"
        args.append(scope)
    if after is not None:
        # BINARY collation compares UTF-8 bytes: code point order; the primary key index serves the range.
        sql += ' AND s."key" > ?'
        args.append(after)
    sql += f' AND {cond} ORDER BY s.scope, s."key"'
    args.extend(params)
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return sql, args


def scopes_query(now: str, after: str | None, search: str | None, limit: int) -> tuple[str, list[Any]]:
    """A page of scopes (the state browser): live ones after ``after`` containing ``search``, at most ``limit``.

    BINARY collation: code point order. Both forms read the candidates from the primary key index in scope order
    (a co-routine, stopped by the LIMIT: no ORDER BY above it, which would read them all first) and keep those
    with a live row.
    """
    if search is None:
        # A skip scan: one index descent per step to the next scope, so a scope's number of keys costs nothing.
        first = f"SELECT scope FROM {TABLE_NAME}{'' if after is None else ' WHERE scope > ?'} ORDER BY scope LIMIT 1"
        sql = (
            f"WITH RECURSIVE c(scope) AS (SELECT ({first}) UNION ALL"
            f" SELECT (SELECT n.scope FROM {TABLE_NAME} AS n WHERE n.scope > c.scope ORDER BY n.scope LIMIT 1)"
            f" FROM c WHERE c.scope IS NOT NULL)"
            f" SELECT scope FROM c WHERE scope IS NOT NULL AND {_HAS_LIVE} LIMIT ?"
        )
        args: list[Any] = [] if after is None else [after]
    else:
        # Few scopes match: one pass over the index's entries (instr: a plain, case-sensitive substring; LIKE
        # would be neither) beats a descent per scope passed.
        where = "instr(scope, ?) > 0" + ("" if after is None else " AND scope > ?")
        sql = (
            f"SELECT c.scope FROM (SELECT DISTINCT scope FROM {TABLE_NAME} WHERE {where} ORDER BY scope) AS c"
            f" WHERE {_HAS_LIVE} LIMIT ?"
        )
        args = [search] if after is None else [search, after]
    return sql, [*args, now, limit]


# --- the change feed (SPEC §10): rows written by the triggers of motia_state.sql.feed -----------------

_C: Final = CHANGES_TABLE
_CHANGE_ROW: Final = f'SELECT revision, event, scope, "key", old_value, new_value, at, traceparent FROM {_C}'
SQL_CHANGES_HEAD: Final = f"{_CHANGE_ROW} WHERE revision > ?"
# A key's history, newest first: a backward range of the history index (scope, key, revision).
SQL_KEY_HISTORY: Final = f'{_CHANGE_ROW} WHERE scope = ? AND "key" = ? AND revision < ? ORDER BY revision DESC LIMIT ?'
# min()/max() over the INTEGER PRIMARY KEY are one b-tree descent each.
SQL_CHANGES_MIN: Final = f"SELECT min(revision) FROM {_C}"
SQL_CHANGES_MAX: Final = f"SELECT max(revision) FROM {_C}"
SQL_SCOPE_REVISION: Final = f"SELECT max(revision) FROM {_C} WHERE scope = ?"
# Compaction looks only at the oldest COMPACT_BATCH rows (by revision), so a batch costs the same however many
# changes are kept; the newest row always stays, so min(revision) - 1 remains the floor of what is kept.
SQL_COMPACT: Final = (
    f"DELETE FROM {_C} WHERE revision IN (SELECT revision FROM (SELECT revision, at FROM {_C} "
    f"ORDER BY revision LIMIT ?) WHERE at < ?) AND revision < (SELECT max(revision) FROM {_C})"
)
# A traced write (telemetry.OPERATION set) runs between these two, in its write transaction: the revision counter
# before it (no row yet: 0), then its traceparent on every change it recorded. The triggers stay plain SQL, so a
# writer with sqlite3 is recorded as before (traceparent NULL). AUTOINCREMENT: revisions are never reused.
SQL_LAST_REVISION: Final = f"SELECT seq FROM sqlite_sequence WHERE name = '{_C}'"
SQL_TRACE_CHANGES: Final = f"UPDATE {_C} SET traceparent = ? WHERE revision > ?"
# One look at the schema at connect: whether the feed's table and its triggers exist.
SQL_FEED_OBJECTS: Final = (
    f"SELECT type, name FROM sqlite_master WHERE (type = 'trigger' AND tbl_name = '{TABLE_NAME}') "
    f"OR (type = 'table' AND name = '{_C}')"
)

COMPACT_BATCH: Final = 5000


def changes_query(scope: str | None, key: str | None, after: int, limit: int) -> tuple[str, list[Any]]:
    """The changes after ``after`` (of ``scope``/``key``), oldest first, at most ``limit``."""
    sql = SQL_CHANGES_HEAD
    args: list[Any] = [after]
    if scope is not None and key is not None:
        # The history index serves (scope, key, revision > after) as one range.
        sql += ' AND scope = ? AND "key" = ?'
        args += [scope, key]
    elif scope is not None:
        # "+scope": walk the primary key from ``after`` rather than the index, which would visit the scope's
        # whole history (every key) and sort it at each read. A read that found nothing moves ``after`` on
        # (the adapter's wait, the stream's cursor), so a quiet scope in a busy store does not re-walk rows.
        sql += " AND +scope = ?"
        args.append(scope)
    args.append(limit)
    return sql + " ORDER BY revision LIMIT ?", args
