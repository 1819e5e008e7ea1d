"""SQLite backend: one file (WAL) shared by any number of processes, or a private ``:memory:`` database.

Speed comes from the shape of the hot path: every operation is one hop into a single worker thread that
owns the ``sqlite3`` connection and runs the whole transaction there (``BEGIN IMMEDIATE`` + statements +
``COMMIT`` in one function call), with constant SQL strings that sqlite3's statement cache prepares once.
Operations queued while the worker is busy go together as the next batch: one hop and one transaction for
all of them, so many concurrent tasks cost less per operation than one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from ..adapter import Entry, StateAdapter, StateItem
from ..errors import StateBackendError, StateConfigError
from ..ops import Filter, match
from ..schema import TABLE_NAME
from ..values import decode, encode
from .sql import backend_of_url, make_sqlite_folder, sqlite_file_path

__all__ = ["SQLiteAdapter", "compile_filters"]

# --- SQL, written once -------------------------------------------------------------------------------------

_LIVE: Final = "(expires_at IS NULL OR expires_at > ?)"
_SQL_GET: Final = f'SELECT value FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? AND {_LIVE}'
_SQL_GET_ENTRY: Final = f'SELECT value, expires_at FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? AND {_LIVE}'
_SQL_TTL: Final = f'SELECT expires_at FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? AND {_LIVE}'
# created_at is kept on overwrite, unless the row being replaced had already expired (then it is new).
_SQL_UPSERT: Final = (
    f'INSERT INTO {TABLE_NAME} (scope, "key", value, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) '
    'ON CONFLICT (scope, "key") DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, '
    "updated_at = excluded.updated_at, created_at = CASE WHEN "
    f"{TABLE_NAME}.expires_at IS NOT NULL AND {TABLE_NAME}.expires_at <= excluded.updated_at "
    f"THEN excluded.created_at ELSE {TABLE_NAME}.created_at END"
)
_SQL_DELETE: Final = f'DELETE FROM {TABLE_NAME} WHERE scope = ? AND "key" = ?'
# RETURNING gives plain columns only: SQLite 3.40 evaluates `expires_at IS NULL` wrongly there, so the
# liveness of deleted rows is decided in Python.
_SQL_DELETE_RETURNING: Final = f'DELETE FROM {TABLE_NAME} WHERE scope = ? AND "key" = ? RETURNING value, expires_at'
_SQL_CLEAR: Final = f"DELETE FROM {TABLE_NAME} WHERE scope = ? RETURNING expires_at"
_SQL_CLEANUP: Final = (
    f"DELETE FROM {TABLE_NAME} WHERE rowid IN (SELECT rowid FROM {TABLE_NAME} "
    "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)"
)
_SQL_KEYS: Final = f'SELECT "key" FROM {TABLE_NAME} WHERE scope = ? AND {_LIVE} ORDER BY "key"'
_SQL_GROUPS: Final = f"SELECT DISTINCT scope FROM {TABLE_NAME} WHERE {_LIVE} ORDER BY scope"
_SQL_VALUES: Final = f'SELECT value FROM {TABLE_NAME} WHERE scope = ? AND {_LIVE} ORDER BY "key"'
# A JSON array of keys is one parameter: one statement text whatever the number of keys.
_SQL_GET_MANY: Final = (
    f'SELECT "key", value FROM {TABLE_NAME} WHERE scope = ? AND "key" IN (SELECT value FROM json_each(?)) AND {_LIVE}'
)
_SQL_DELETE_MANY: Final = (
    f'DELETE FROM {TABLE_NAME} WHERE scope = ? AND "key" IN (SELECT value FROM json_each(?)) RETURNING expires_at'
)

CLEANUP_BATCH: Final = 1000

# Job kinds: plain read, write inside the batch transaction, job running its own transactions.
_READ, _WRITE, _OWN = 0, 1, 2
# One batch in flight: whatever arrives meanwhile becomes the next batch. (Two in flight pipelines better on
# an idle machine but halves the batches; under the GIL the bigger batches won in measurements.)
_MAX_IN_FLIGHT: Final = 1


def _ts(t: float) -> str:
    """UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': sorts like time and compares with SQLite's datetime('now')."""
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _live(expires: str | None, now: str) -> bool:
    return expires is None or expires > now


def _parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- filters compiled to SQL -------------------------------------------------------------------------------

_INT64: Final = (-(2**63), 2**63 - 1)
_NUM: Final = "IN ('integer', 'real')"


def _is_number(v: object) -> bool:
    return type(v) in (int, float)


def _exact_number(v: object) -> bool:
    """Numbers SQLite can bind and compare exactly (ints beyond 64 bits cannot be bound)."""
    return type(v) is float or (type(v) is int and _INT64[0] <= v <= _INT64[1])


class _Sql:
    """A growing SQL fragment with its parameters; ``recheck`` marks a filter SQL can only pre-select."""

    def __init__(self) -> None:
        self.sql = ""
        self.params: list[Any] = []
        self.recheck = False

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"


def _eq(q: _Sql, t: str, a: str, operand: Any, *, negate: bool = False) -> str:
    """JSON equality of the node (type ``t``, atom ``a``) with ``operand``; ``negate``: same kind, not equal."""
    if operand is None:
        return "0" if negate else f"{t} = 'null'"
    if type(operand) is bool:
        want = (not operand) if negate else operand
        return f"{t} = '{'true' if want else 'false'}'"
    if _is_number(operand):
        if not _exact_number(operand):
            q.recheck = True
            return f"{t} {_NUM}"
        return f"({t} {_NUM} AND {a} {'<>' if negate else '='} {q.p(operand)})"
    if type(operand) is str:
        return f"({t} = 'text' AND {a} {'<>' if negate else '='} {q.p(operand)})"
    # Containers: the type is checked here, equality by the Python re-check.
    q.recheck = True
    return f"{t} = '{'object' if type(operand) is dict else 'array'}'"


def _predicate(q: _Sql, f: Filter, t: str, a: str, v: str, alias: str) -> str:
    """SQL for filter ``f`` on a node that exists, of JSON type ``t``, atom ``a`` and JSON text ``v``."""
    op, operand = f.op, f.value
    if op == "isNotNull":
        return f"{t} <> 'null'"
    if op == "eq":
        return _eq(q, t, a, operand)
    if op == "neq":
        return _eq(q, t, a, operand, negate=True)
    if op in ("gt", "gte", "lt", "lte"):
        sym = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
        if type(operand) is str:
            return f"({t} = 'text' AND {a} {sym} {q.p(operand)})"
        if _is_number(operand):
            if not _exact_number(operand):
                q.recheck = True
                return f"{t} {_NUM}"
            return f"({t} {_NUM} AND {a} {sym} {q.p(operand)})"
        return "0"
    if op in ("contains", "notContains"):
        parts: list[str] = []
        if type(operand) is str:
            # instr, never LIKE: '%' and '_' in the operand stay literal.
            cmp = "> 0" if op == "contains" else "= 0"
            parts.append(f"({t} = 'text' AND instr({a}, {q.p(operand)}) {cmp})")
        inner = _Sql()
        elem = _eq(inner, f"{alias}e.type", f"{alias}e.atom", operand)
        # json_each only ever sees valid JSON text: a non-array node is replaced by '[]'.
        each = f"json_each(CASE WHEN {t} = 'array' THEN {v} ELSE '[]' END) AS {alias}e"
        if inner.recheck and op == "notContains":
            q.recheck = True  # NOT EXISTS over a pre-selection would drop rows: let Python decide
            parts.append(f"{t} = 'array'")
        else:
            q.recheck = q.recheck or inner.recheck
            exists = f"EXISTS (SELECT 1 FROM {each} WHERE {elem})"
            q.params.extend(inner.params)
            parts.append(f"({t} = 'array' AND {'' if op == 'contains' else 'NOT '}{exists})")
        return "(" + " OR ".join(parts) + ")"
    if op in ("startsWith", "endsWith"):
        if type(operand) is not str:
            return "0"
        n = len(operand)  # code points, as SQLite's length()/substr() count them in text
        if op == "startsWith":
            return f"({t} = 'text' AND substr({a}, 1, {q.p(n)}) = {q.p(operand)})"
        return (
            f"({t} = 'text' AND length({a}) >= {q.p(n)} AND substr({a}, length({a}) - {q.p(n)} + 1) = {q.p(operand)})"
        )
    raise StateConfigError(f"unknown filter op {op!r}")  # parse_filters already refuses these


def _compile_one(f: Filter, i: int) -> _Sql:
    q = _Sql()
    if not f.path:
        t, a, v = "json_type(s.value)", "json_extract(s.value, '$')", "s.value"
        q.sql = f"{t} = 'null'" if f.op == "isNull" else _predicate(q, f, t, a, v, f"f{i}")
        return q
    # Each path segment is matched by json_each's key against a bound parameter: every character of a
    # field name is literal ('.', '[', '"', '*', '\\', emoji...), whatever the SQLite version's path syntax.
    joins: list[str] = []
    conds: list[str] = []
    params: list[Any] = []
    parent_type, parent_text = "json_type(s.value)", "s.value"
    for depth, seg in enumerate(f.path):
        alias = f"f{i}p{depth}"
        joins.append(f"json_each(CASE WHEN {parent_type} = 'object' THEN {parent_text} ELSE '{{}}' END) AS {alias}")
        conds.append(f"{alias}.key = ?")
        params.append(seg)
        parent_type, parent_text = f"{alias}.type", f"{alias}.value"
    last = f"f{i}p{len(f.path) - 1}"
    t, a, v = f"{last}.type", f"{last}.atom", f"{last}.value"
    if f.op == "isNull":
        pred, negate = f"{t} <> 'null'", True
    else:
        pred, negate = _predicate(q, f, t, a, v, f"f{i}"), False
    where = " AND ".join([*conds, pred])
    sql = f"{'NOT ' if negate else ''}EXISTS (SELECT 1 FROM {', '.join(joins)} WHERE {where})"
    q.params[:0] = params
    q.sql = sql
    return q


def compile_filters(filters: Sequence[Filter]) -> tuple[str, list[Any], list[Filter]]:
    """SQL condition on ``motia_state AS s`` for ``filters`` (ANDed), its parameters, and the filters that
    SQL only pre-selects (container operands, integers beyond 64 bits) which Python's ``match`` re-checks.
    """
    conds: list[str] = []
    params: list[Any] = []
    recheck: list[Filter] = []
    for i, f in enumerate(filters):
        q = _compile_one(f, i)
        conds.append(q.sql)
        params.extend(q.params)
        if q.recheck:
            recheck.append(f)
    return (" AND ".join(conds) if conds else "1"), params, recheck


# --- the worker-side operations: fn(conn, now, *args) ------------------------------------------------------


def _op_get(conn: sqlite3.Connection, now: str, scope: str, key: str) -> Any:
    row = conn.execute(_SQL_GET, (scope, key, now)).fetchone()
    return None if row is None else decode(row[0])


def _op_get_entry(conn: sqlite3.Connection, now: str, scope: str, key: str) -> Entry | None:
    row = conn.execute(_SQL_GET_ENTRY, (scope, key, now)).fetchone()
    return None if row is None else Entry(decode(row[0]), _parse_ts(row[1]))


def _op_ttl(conn: sqlite3.Connection, now: str, scope: str, key: str) -> float | None:
    row = conn.execute(_SQL_TTL, (scope, key, now)).fetchone()
    if row is None or row[0] is None:
        return None
    expires = _parse_ts(row[0])
    assert expires is not None
    return max(expires.timestamp() - time.time(), 0.0)


def _op_set(conn: sqlite3.Connection, now: str, scope: str, key: str, text: str, ttl: float | None) -> Any:
    row = conn.execute(_SQL_GET, (scope, key, now)).fetchone()
    expires = None if ttl is None else _ts(time.time() + ttl)
    conn.execute(_SQL_UPSERT, (scope, key, text, expires, now, now))
    return None if row is None else decode(row[0])


def _op_delete(conn: sqlite3.Connection, now: str, scope: str, key: str) -> None:
    conn.execute(_SQL_DELETE, (scope, key))


def _op_delete_entry(conn: sqlite3.Connection, now: str, scope: str, key: str) -> Any:
    rows = conn.execute(_SQL_DELETE_RETURNING, (scope, key)).fetchall()
    return decode(rows[0][0]) if rows and _live(rows[0][1], now) else None


def _op_update(
    conn: sqlite3.Connection, now: str, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
) -> tuple[Any, Any]:
    # Runs inside BEGIN IMMEDIATE: no other process can write between this read and the upsert.
    row = conn.execute(_SQL_GET_ENTRY, (scope, key, now)).fetchone()
    old = None if row is None else decode(row[0])
    # apply gets its own copy so that the returned old value cannot be altered by it; raises -> no write.
    new = apply(None if row is None else decode(row[0]))
    # An existing entry keeps its expiry; a new one gets ttl_if_new.
    fresh = None if ttl_if_new is None else _ts(time.time() + ttl_if_new)
    expires = fresh if row is None else row[1]
    conn.execute(_SQL_UPSERT, (scope, key, encode(new), expires, now, now))
    return old, new


def _op_clear(conn: sqlite3.Connection, now: str, scope: str) -> int:
    return sum(1 for (expires,) in conn.execute(_SQL_CLEAR, (scope,)).fetchall() if _live(expires, now))


def _op_keys(conn: sqlite3.Connection, now: str, scope: str) -> list[str]:
    return [k for (k,) in conn.execute(_SQL_KEYS, (scope, now))]


def _op_groups(conn: sqlite3.Connection, now: str) -> list[str]:
    return [s for (s,) in conn.execute(_SQL_GROUPS, (now,))]


def _op_values(conn: sqlite3.Connection, now: str, scope: str) -> list[Any]:
    return [decode(v) for (v,) in conn.execute(_SQL_VALUES, (scope, now))]


def _op_items(
    conn: sqlite3.Connection,
    now: str,
    scope: str | None,
    filters: Sequence[Filter],
    limit: int | None,
    after: str | None = None,
) -> list[StateItem]:
    cond, params, recheck = compile_filters(filters)
    sql = f'SELECT s.scope, s."key", s.value, s.expires_at FROM {TABLE_NAME} AS s WHERE '
    args: list[Any] = []
    sql += "(s.expires_at IS NULL OR s.expires_at > ?)"
    args.append(now)
    if scope is not None:
        sql += " AND s.scope = ?"
        args.append(scope)
    if after is not None:
        # BINARY collation compares UTF-8 bytes: code point order; the primary key index serves the range.
        sql += ' AND s."key" > ?'
        args.append(after)
    sql += f' AND {cond} ORDER BY s.scope, s."key"'
    args.extend(params)
    if limit is not None and not recheck:
        sql += " LIMIT ?"
        args.append(limit)
    out: list[StateItem] = []
    if limit is not None and limit <= 0:
        return out
    for s, k, text, expires in conn.execute(sql, args):
        value = decode(text)
        if recheck and not match(value, recheck):
            continue
        out.append(StateItem(s, k, value, _parse_ts(expires)))
        if limit is not None and len(out) >= limit:
            break
    return out


def _op_get_many(conn: sqlite3.Connection, now: str, scope: str, keys_json: str) -> dict[str, Any]:
    return {k: decode(v) for k, v in conn.execute(_SQL_GET_MANY, (scope, keys_json, now))}


def _op_set_many(
    conn: sqlite3.Connection, now: str, scope: str, rows: list[tuple[str, str]], ttl: float | None
) -> None:
    expires = None if ttl is None else _ts(time.time() + ttl)
    conn.executemany(_SQL_UPSERT, [(scope, k, text, expires, now, now) for k, text in rows])


def _op_delete_many(conn: sqlite3.Connection, now: str, scope: str, keys_json: str) -> int:
    rows = conn.execute(_SQL_DELETE_MANY, (scope, keys_json)).fetchall()
    return sum(1 for (expires,) in rows if _live(expires, now))


def _op_cleanup(conn: sqlite3.Connection, now: str) -> int:
    # Bounded batches, each its own short write transaction: other processes get the lock in between.
    removed = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(_SQL_CLEANUP, (now, CLEANUP_BATCH)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        removed += max(n, 0)
        if n < CLEANUP_BATCH:
            return removed


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


# --- the worker thread -----------------------------------------------------------------------------------


class _Worker:
    """One thread owning the sqlite3 connection. Jobs arrive on a SimpleQueue; each answer goes back to the
    event loop with one ``call_soon_threadsafe`` (leaner than an executor's future chain: one loop turn less).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Post | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="motia-state-sqlite", daemon=True)
        self._thread.start()

    def post(self, fn: Callable[[], Any], reply: Callable[[bool, Any], None], loop: asyncio.AbstractEventLoop) -> None:
        self._jobs.put((fn, reply, loop))

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, reply, loop = job
            try:
                ok, result = True, fn()
            except Exception as exc:
                ok, result = False, exc
            # RuntimeError: that event loop is closed, nobody waits for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(reply, ok, result)

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the worker thread and wait for its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def reply(ok: bool, result: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(result)
            else:
                fut.set_exception(result)

        self.post(fn, reply, loop)
        return await fut

    def stop(self) -> None:
        """Let the thread end once the jobs already queued are done."""
        self._jobs.put(None)


_Post = tuple[Callable[[], Any], Callable[[bool, Any], None], asyncio.AbstractEventLoop]


# --- the adapter -------------------------------------------------------------------------------------------

_Job = tuple[Callable[..., Any], tuple[Any, ...], int, "asyncio.Future[Any]"]


class SQLiteAdapter(StateAdapter):
    """State in a SQLite file (``sqlite:///rel/path``, ``sqlite:////abs/path``) or ``sqlite:///:memory:``."""

    backend: ClassVar[str] = "sqlite"

    def __init__(
        self, url: str, *, migrate: str = "auto", busy_timeout: float = 5.0, connect_timeout: float = 10.0
    ) -> None:
        if backend_of_url(url) != "sqlite":
            raise StateConfigError(f"SQLiteAdapter needs a sqlite:// URL, got {url.split('://', 1)[0]}://…")
        if migrate not in ("auto", "check", "off"):
            raise StateConfigError(f"migrate: {migrate!r} is not one of auto, check, off")
        self.url = url
        self.path = sqlite_file_path(url)  # None = :memory:
        self.migrate = migrate
        self.busy_timeout = float(busy_timeout)
        self.connect_timeout = float(connect_timeout)
        self._worker: _Worker | None = None
        self._conn: sqlite3.Connection | None = None
        self._queue: list[_Job] = []
        self._in_flight = 0  # batches sent to the worker and not yet answered
        self._flush_pending = False  # a _flush is scheduled: new operations wait for it
        self._flight_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SQLiteAdapter({self.url!r})"

    # --- lifecycle ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the file (creating it and its folder), set WAL, then bring the schema up to date."""
        if self._worker is not None:
            return
        worker = _Worker()
        try:
            self._conn = await worker.run(self._open)
            # Usual case, schema at head: one query on our own connection, no second engine.
            behind = self.path is not None and self.migrate != "off"
            if behind and not await worker.run(self._at_head):
                from ..migrate import ensure_schema

                await ensure_schema(self.url, self.migrate, connect_timeout=self.connect_timeout)
        except BaseException:
            conn, self._conn = self._conn, None
            if conn is not None:
                await worker.run(conn.close)
            worker.stop()
            raise
        self._worker = worker

    def _at_head(self) -> bool:
        """Worker thread: is the file's schema at the newest revision shipped with this package?"""
        from ..migrate import head
        from ..schema import VERSION_TABLE

        assert self._conn is not None
        try:
            rows = self._conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        except sqlite3.OperationalError:
            return False  # no version table yet
        return rows == [(head(),)]

    def _open(self) -> sqlite3.Connection:
        """Runs in the worker thread, which then owns the connection."""
        try:
            if self.path is None:
                return self._open_memory()
            make_sqlite_folder(self.url, self.path)
            conn = self._connect_file(self.path, uri=False)
            try:
                # WAL lets readers and one writer share the file across processes; NORMAL is durable
                # across application crashes and only fsyncs at checkpoints.
                self._use_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
            except BaseException:
                conn.close()
                raise
            return conn
        except sqlite3.Error as exc:
            raise self._wrap(exc) from exc

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode (a lasting property of the file, so usually already done).

        Switching needs every other connection out of the way, and SQLite reports BUSY for it without
        waiting on busy_timeout: when many processes open a brand-new file at once, retry until it is.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    return
                # A refused switch may also just answer with the old mode.
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                    return
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked: could not switch the file to WAL mode")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.01 + random.random() * 0.04)

    def _connect_file(self, target: str, *, uri: bool) -> sqlite3.Connection:
        # isolation_level=None: we write BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(
            target,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
            uri=uri,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _open_memory(self) -> sqlite3.Connection:
        # A named in-memory database lives as long as our connection; Alembic migrates it through a second,
        # short-lived connection to the same name.
        name = f"file:motia-state-{uuid.uuid4().hex}?mode=memory&cache=shared"
        conn = self._connect_file(name, uri=True)
        if self.migrate != "off":
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            from ..migrate import upgrade_connection

            engine = create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(name, uri=True, check_same_thread=False),
                poolclass=NullPool,
            )
            try:
                with engine.begin() as sa_conn:
                    upgrade_connection(sa_conn)
            finally:
                engine.dispose()
        return conn

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent; ``connect`` may follow."""
        worker, self._worker = self._worker, None
        conn, self._conn = self._conn, None
        if worker is None:
            return
        try:
            if conn is not None:
                await worker.run(conn.close)
        finally:
            worker.stop()

    def translate_error(self, exc: Exception) -> Exception | None:
        """sqlite3 errors become StateBackendError (with what to do where we know it)."""
        if isinstance(exc, sqlite3.Error):
            return self._wrap(exc)
        return None

    def _wrap(self, exc: sqlite3.Error) -> StateBackendError:
        reason = str(exc) or type(exc).__name__
        hint = ""
        if "unable to open database file" in reason:
            hint = (
                f"; check that the folder of {self.path!r} exists and is writable by this process "
                "(or point the sqlite URL elsewhere)"
            )
        elif "readonly" in reason:
            hint = f"; the database file {self.path!r} or its folder is read-only: make both writable"
        elif "database is locked" in reason or "database is busy" in reason:
            hint = (
                f"; another process held the write lock longer than busy_timeout ({self.busy_timeout}s): "
                "raise busy_timeout or shorten the other writer's transactions"
            )
        elif f"no such table: {TABLE_NAME}" in reason:
            hint = "; the schema is missing: run `motia-state migrate` (or use migrate: auto)"
        return StateBackendError(f"{type(exc).__name__}: {reason}{hint}", backend="sqlite", url=self.url)

    # --- the single worker and its batches ----------------------------------------------------------

    async def _call(self, kind: int, fn: Callable[..., Any], *args: Any) -> Any:
        if self._worker is None:
            await self.connect()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((fn, args, kind, fut))
        # A batch in flight on another (maybe closed) loop never calls back here: don't wait for it. Sending
        # more batches is always safe, the single worker thread runs them one after the other.
        if self._flight_loop is not loop:
            self._in_flight = 0
            self._flush_pending = False
            self._flight_loop = loop
        if not self._flush_pending and self._in_flight < _MAX_IN_FLIGHT:
            self._dispatch(loop)
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        worker = self._worker
        if worker is None:
            for _, _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(StateBackendError("the store was closed", backend="sqlite", url=self.url))
            return
        self._in_flight += 1
        worker.post(lambda: self._run_batch(batch), lambda ok, results: self._finish(batch, loop, ok, results), loop)

    def _finish(self, batch: list[_Job], loop: asyncio.AbstractEventLoop, ok: bool, answer: Any) -> None:
        if self._flight_loop is loop:
            self._in_flight -= 1
        exc: BaseException | None = None if ok else answer
        results: list[tuple[bool, Any]] | None = answer if ok else None
        for i, (_, _, _, fut) in enumerate(batch):
            if fut.done():
                continue
            if results is None:
                assert exc is not None
                fut.set_exception(exc)
            else:
                ok, value = results[i]
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
        # The tasks just answered run next in this loop turn and most queue their next operation right away:
        # send the queue after them, as one batch, rather than the first of them alone.
        if not self._flush_pending:
            self._flush_pending = True
            loop.call_soon(self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_pending = False
        if self._queue and (self._in_flight < _MAX_IN_FLIGHT or self._flight_loop is not loop):
            self._dispatch(loop)

    def _run_batch(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Worker thread: run the batch; a job with its own transactions (cleanup) runs between two segments."""
        if len(batch) == 1 or all(job[2] != _OWN for job in batch):
            return self._run_segment(batch)
        results: list[tuple[bool, Any]] = []
        segment: list[_Job] = []
        for job in batch:
            if job[2] == _OWN:
                results += self._run_segment(segment) if segment else []
                results += self._run_segment([job])
                segment = []
            else:
                segment.append(job)
        return results + (self._run_segment(segment) if segment else [])

    def _run_segment(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one write transaction (opened only if something writes)."""
        conn = self._conn
        if conn is None:
            err = StateBackendError("the store was closed", backend="sqlite", url=self.url)
            return [(False, err)] * len(batch)
        now = _ts(time.time())
        results: list[tuple[bool, Any]] = []
        try:
            for fn, args, kind, _ in batch:
                if kind == _WRITE and not conn.in_transaction:
                    conn.execute("BEGIN IMMEDIATE")
                try:
                    results.append((True, fn(conn, now, *args)))
                except (sqlite3.Error, StateBackendError):
                    raise
                except Exception as exc:  # e.g. UpdateOpError from apply(): that op wrote nothing
                    results.append((False, exc))
            if conn.in_transaction:
                conn.execute("COMMIT")
        except (sqlite3.Error, StateBackendError) as exc:
            _rollback(conn)
            busy = isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))
            if len(batch) > 1 and not busy:
                # Re-run one by one so that only the operation that fails reports the error.
                return [self._run_segment([job])[0] for job in batch]
            # Busy after busy_timeout: every operation of the batch waited for the same lock; retrying them one
            # by one would only multiply the wait.
            return [(False, self._wrap(exc) if isinstance(exc, sqlite3.Error) else exc)] * len(batch)
        return results

    # --- the hooks -------------------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> Any:
        """The live value or None."""
        return await self._call(_READ, _op_get, scope, key)

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        """The live value with its expiry."""
        result: Entry | None = await self._call(_READ, _op_get_entry, scope, key)
        return result

    async def set(self, scope: str, key: str, value: Any) -> None:
        """Store ``value`` with no expiry."""
        await self._call(_WRITE, _op_set, scope, key, encode(value), None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        """Write and return the old live value, in one transaction."""
        return await self._call(_WRITE, _op_set, scope, key, encode(value), ttl)

    async def delete(self, scope: str, key: str) -> None:
        """Remove the entry (absent = no-op)."""
        await self._call(_WRITE, _op_delete, scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        """Remove the entry; return its old live value."""
        return await self._call(_WRITE, _op_delete_entry, scope, key)

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        """Read, ``apply``, write under SQLite's write lock: atomic across processes."""
        result: tuple[Any, Any] = await self._call(_WRITE, _op_update, scope, key, apply, ttl_if_new)
        return result

    async def clear(self, scope: str) -> int:
        """Remove every entry of ``scope``; count the live ones."""
        result: int = await self._call(_WRITE, _op_clear, scope)
        return result

    async def cleanup(self) -> int:
        """Delete expired rows in batches of CLEANUP_BATCH; return how many."""
        result: int = await self._call(_OWN, _op_cleanup)
        return result

    async def keys(self, scope: str) -> list[str]:
        """Live keys of ``scope``, sorted."""
        result: list[str] = await self._call(_READ, _op_keys, scope)
        return result

    async def list_groups(self) -> list[str]:
        """Scopes with at least one live entry, sorted."""
        result: list[str] = await self._call(_READ, _op_groups)
        return result

    async def values(self, scope: str) -> list[Any]:
        """Live values of ``scope`` ordered by key."""
        result: list[Any] = await self._call(_READ, _op_values, scope)
        return result

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        """Live entries passing ``filters`` (evaluated by SQLite), ordered by (scope, key), keys after ``after``."""
        result: list[StateItem] = await self._call(_READ, _op_items, scope, tuple(filters), limit, after)
        return result

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        """Live values of the keys that exist."""
        if not keys:
            return {}
        result: dict[str, Any] = await self._call(_READ, _op_get_many, scope, json.dumps(list(keys)))
        return result

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        """Write every entry in one transaction."""
        if not mapping:
            return
        rows = [(k, encode(v)) for k, v in mapping.items()]
        await self._call(_WRITE, _op_set_many, scope, rows, ttl)

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        """Remove ``keys``; count the live ones removed."""
        if not keys:
            return 0
        result: int = await self._call(_WRITE, _op_delete_many, scope, json.dumps(list(keys)))
        return result

    async def ttl(self, scope: str, key: str) -> float | None:
        """Seconds left, or None."""
        result: float | None = await self._call(_READ, _op_ttl, scope, key)
        return result
