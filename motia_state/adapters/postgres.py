"""Postgres backend: the ``motia_state`` table through an asyncpg pool.

The table and its migrations are SQLAlchemy's (``motia_state.schema`` + Alembic); the hot path is not.
Every operation is one statement on a pooled asyncpg connection (asyncpg prepares and caches it), so a
call costs one round trip and no BEGIN/COMMIT. ``get`` and ``set`` calls issued while other ones are in
flight are gathered into one statement over ``unnest`` arrays: many concurrent callers then share a
round trip, which is what lets the adapter outrun one-statement-per-call drivers at high concurrency.

Expiry uses the database clock (``now()``), so workers on many hosts agree on what is live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from ..adapter import Entry, StateAdapter, StateItem
from ..errors import StateBackendError, StateConfigError, StateError, mask_secrets, mask_url
from ..ops import Filter
from ..schema import TABLE_NAME
from ..values import decode, encode

__all__ = ["PostgresAdapter"]

_T: Final = TABLE_NAME
_LIVE: Final = "(expires_at IS NULL OR expires_at > now())"
# A NULL ttl gives a NULL expiry (NULL * interval is NULL): one statement serves both cases.
_EXPIRY: Final = "now() + {ttl}::float8 * interval '1 second'"
# An overwrite of an expired row starts a new entry; an overwrite of a live one keeps its creation time.
_CREATED_ON_CONFLICT: Final = (
    "created_at = CASE WHEN m.expires_at IS NULL OR m.expires_at > now() THEN m.created_at ELSE now() END"
)

# --- statements (generated once; asyncpg prepares each per connection and caches it) ---------------

_GET: Final = f"SELECT value FROM {_T} WHERE scope = $1 AND key = $2 AND {_LIVE}"
_GET_ENTRY: Final = f"SELECT value, expires_at FROM {_T} WHERE scope = $1 AND key = $2 AND {_LIVE}"
_GET_BATCH: Final = (
    f"SELECT m.scope, m.key, m.value FROM {_T} m"
    " JOIN unnest($1::text[], $2::text[]) AS t(scope, key) ON m.scope = t.scope AND m.key = t.key"
    " WHERE m.expires_at IS NULL OR m.expires_at > now()"
)

# set: the old row is locked and read, then the upsert writes. The DO UPDATE only happens when the old
# row was seen: if another writer inserted the key after this statement's snapshot, nothing is written
# ("written" is false) and the caller runs the statement again, so the old value returned is always the
# one this write replaced.
_SET: Final = f"""
WITH old AS (
    SELECT value, {_LIVE} AS live FROM {_T} WHERE scope = $1 AND key = $2 FOR UPDATE
), ins AS (
    INSERT INTO {_T} AS m (scope, key, value, expires_at, created_at, updated_at)
    VALUES ($1, $2, $3::jsonb, {_EXPIRY.format(ttl="$4")}, now(), now())
    ON CONFLICT (scope, key) DO UPDATE
    SET value = excluded.value, expires_at = excluded.expires_at, updated_at = now(), {_CREATED_ON_CONFLICT}
    WHERE EXISTS (SELECT 1 FROM old)
    RETURNING 1
)
SELECT (SELECT value FROM old WHERE live) AS old, EXISTS (SELECT 1 FROM ins) AS written
"""

# The same for distinct keys at once; rows are locked and inserted in one (code point) order so that
# concurrent batches cannot deadlock each other.
_SET_BATCH: Final = f"""
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS t(scope, key, value, ttl)
), old AS (
    SELECT m.scope, m.key, m.value, (m.expires_at IS NULL OR m.expires_at > now()) AS live
    FROM {_T} m JOIN input t ON m.scope = t.scope AND m.key = t.key
    ORDER BY m.scope, m.key
    FOR UPDATE OF m
), ins AS (
    INSERT INTO {_T} AS m (scope, key, value, expires_at, created_at, updated_at)
    SELECT scope, key, value::jsonb, {_EXPIRY.format(ttl="ttl")}, now(), now()
    FROM input ORDER BY scope COLLATE "C", key COLLATE "C"
    ON CONFLICT (scope, key) DO UPDATE
    SET value = excluded.value, expires_at = excluded.expires_at, updated_at = now(), {_CREATED_ON_CONFLICT}
    WHERE EXISTS (SELECT 1 FROM old o WHERE o.scope = m.scope AND o.key = m.key)
    RETURNING m.scope, m.key
)
SELECT t.scope, t.key, CASE WHEN o.live THEN o.value END AS old, w.key IS NOT NULL AS written
FROM input t
LEFT JOIN old o ON o.scope = t.scope AND o.key = t.key
LEFT JOIN ins w ON w.scope = t.scope AND w.key = t.key
"""

_SET_MANY: Final = f"""
INSERT INTO {_T} AS m (scope, key, value, expires_at, created_at, updated_at)
SELECT $1::text, t.key, t.value::jsonb, {_EXPIRY.format(ttl="$4")}, now(), now()
FROM unnest($2::text[], $3::text[]) AS t(key, value) ORDER BY t.key COLLATE "C"
ON CONFLICT (scope, key) DO UPDATE
SET value = excluded.value, expires_at = excluded.expires_at, updated_at = now(), {_CREATED_ON_CONFLICT}
"""

_DELETE: Final = f"DELETE FROM {_T} WHERE scope = $1 AND key = $2 RETURNING value, {_LIVE} AS live"
_DELETE_MANY: Final = f"""
WITH d AS (DELETE FROM {_T} WHERE scope = $1 AND key = ANY($2::text[]) RETURNING expires_at)
SELECT count(*) FROM d WHERE {_LIVE}
"""
_CLEAR: Final = (
    f"WITH d AS (DELETE FROM {_T} WHERE scope = $1 RETURNING expires_at) SELECT count(*) FROM d WHERE {_LIVE}"
)
_CLEANUP_BATCH: Final = 5000
# ctid = ANY(ARRAY(...)) is a TID scan: each batch touches only the rows it deletes. SKIP LOCKED lets
# many cleaners run at once, each on different rows.
_CLEANUP: Final = f"""
DELETE FROM {_T} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {_T} WHERE expires_at <= now() LIMIT {_CLEANUP_BATCH} FOR UPDATE SKIP LOCKED
)) AND expires_at <= now()
"""

_GET_MANY: Final = f"SELECT key, value FROM {_T} WHERE scope = $1 AND key = ANY($2::text[]) AND {_LIVE}"
_KEYS: Final = f"SELECT key FROM {_T} WHERE scope = $1 AND {_LIVE}"
_VALUES: Final = f"SELECT value FROM {_T} WHERE scope = $1 AND {_LIVE} ORDER BY key"
_GROUPS: Final = f"SELECT DISTINCT scope FROM {_T} WHERE {_LIVE}"
_TTL: Final = (
    f"SELECT EXTRACT(EPOCH FROM expires_at - now())::float8 AS left FROM {_T} WHERE scope = $1 AND key = $2 AND {_LIVE}"
)

# update: optimistic first (read with the row version, write only if the version is unchanged: two round
# trips, no transaction), then, after a lost race, a transaction holding the row lock.
_READ_VERSIONED: Final = f"SELECT value, {_LIVE} AS live, xmin FROM {_T} WHERE scope = $1 AND key = $2"
_CAS_LIVE: Final = (
    f"UPDATE {_T} SET value = $3::jsonb, updated_at = now()"
    f" WHERE scope = $1 AND key = $2 AND xmin = $4::xid AND {_LIVE} RETURNING 1"
)
_CAS_EXPIRED: Final = (
    f"UPDATE {_T} SET value = $3::jsonb, expires_at = {_EXPIRY.format(ttl='$5')}, created_at = now(),"
    f" updated_at = now() WHERE scope = $1 AND key = $2 AND xmin = $4::xid RETURNING 1"
)
_INSERT_NEW: Final = (
    f"INSERT INTO {_T} (scope, key, value, expires_at, created_at, updated_at)"
    f" VALUES ($1, $2, $3::jsonb, {_EXPIRY.format(ttl='$4')}, now(), now())"
    " ON CONFLICT (scope, key) DO NOTHING RETURNING 1"
)
_READ_LOCKED: Final = f"SELECT value, {_LIVE} AS live FROM {_T} WHERE scope = $1 AND key = $2 FOR UPDATE"
_WRITE_LOCKED_LIVE: Final = f"UPDATE {_T} SET value = $3::jsonb, updated_at = now() WHERE scope = $1 AND key = $2"
_WRITE_LOCKED_EXPIRED: Final = (
    f"UPDATE {_T} SET value = $3::jsonb, expires_at = {_EXPIRY.format(ttl='$4')}, created_at = now(),"
    " updated_at = now() WHERE scope = $1 AND key = $2"
)

_OPTIMISTIC_TRIES: Final = 1
# Plan each prepared statement once: the batched statements take arrays, for which Postgres would
# otherwise re-plan every execution (a custom plan per array), costing more than running them.
_SESSION: Final = {"plan_cache_mode": "force_generic_plan"}
# Statements of one kind (get, set) in flight before further calls queue for a batch. One: measured
# against 2, 3 and 16 at concurrency 2-16, it makes the largest batches (one commit for all queued sets)
# and the most operations per second; a lone call still goes straight out.
_IN_FLIGHT: Final = 1
# Seconds one statement may take before it fails with StateBackendError: a frozen server or network must
# not hang a worker forever. Far above anything this adapter sends (cleanup batches, lock waits included).
_DEFAULT_COMMAND_TIMEOUT: Final = 60.0
_CONTENDED_FOR: Final = 1.0  # seconds of going straight to the locking update after a lost race
_MAX_RETRIES: Final = 50

# --- errors -----------------------------------------------------------------------------------------

# Lost connection: a read can always run again; a write only when it never reached the server.
_CONNECTION_LOST: Final = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. a server's termination notice read while the connection sat idle
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    OSError,
)
# Raised before the statement is sent: the pool could not hand out a working connection.
_NOT_SENT: Final = (asyncpg.CannotConnectNowError, ConnectionRefusedError, asyncpg.TooManyConnectionsError)
# The server rolled the statement back; running it again is always safe.
_ROLLED_BACK: Final = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def _connection_lost(exc: BaseException) -> bool:
    # TimeoutError is an OSError, but a slow statement (command_timeout) says nothing about the connection.
    return isinstance(exc, _CONNECTION_LOST) and not isinstance(exc, TimeoutError)


def _not_sent(exc: BaseException) -> bool:
    if isinstance(exc, _NOT_SENT):
        return True
    # asyncpg checks the connection before writing to it: this message means nothing was sent.
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def _describe(exc: BaseException, connect_timeout: float) -> str:
    """What happened and what to do, for a driver error (never contains the password)."""
    text = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within the timeout ({reason or 'timed out'}); check that the server is reachable, "
            f"or raise connect_timeout (now {connect_timeout:g}s) / command_timeout"
        )
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return f"authentication failed ({reason}); check the user and password of the URL"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"the database does not exist ({reason}); create it (CREATE DATABASE) or fix the URL"
    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"the {_T} table is missing ({reason}); run `motia-state migrate` or use migrate: auto"
    if isinstance(exc, OSError | asyncpg.ConnectionDoesNotExistError | asyncpg.CannotConnectNowError):
        return f"cannot reach the server ({reason}); check that Postgres is running and the URL's host and port"
    return reason


# --- batching ---------------------------------------------------------------------------------------

A = TypeVar("A")
R = TypeVar("R")


class _Batcher(Generic[A, R]):
    """Runs calls directly while few are in flight; gathers the rest into one batched call.

    With nothing else in flight (concurrency 1) a call goes straight to ``single``: no extra latency.
    Once ``limit`` calls are in flight, new calls queue; the first queued call starts a task that waits
    for a free slot and then runs everything queued by then as one ``many`` call.
    """

    __slots__ = ("_limit", "_many", "_single", "_tasks", "in_flight", "pending", "waiter")

    def __init__(
        self,
        single: Callable[[A], Awaitable[R]],
        many: Callable[[list[A]], Awaitable[list[R | BaseException]]],
        limit: int,
    ) -> None:
        self._single = single
        self._many = many
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.pending: list[tuple[A, asyncio.Future[R]]] | None = None
        self.waiter: asyncio.Future[None] | None = None

    def release(self) -> None:
        """A statement finished: free its slot and wake the batch waiting for one."""
        self.in_flight -= 1
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def __call__(self, arg: A) -> R:
        if self.pending is None and self.in_flight < self._limit:
            self.in_flight += 1
            try:
                return await self._single(arg)
            finally:
                self.release()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if self.pending is None:
            self.pending = []
            # A task, not the caller: cancelling one caller must not strand the others of its batch.
            task = loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.pending.append((arg, future))
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self.in_flight >= self._limit:
            if self.waiter is None:
                self.waiter = loop.create_future()
            await self.waiter
        batch = self.pending or []
        self.pending = None
        batch = [(arg, fut) for arg, fut in batch if not fut.done()]
        if not batch:
            return
        self.in_flight += 1
        try:
            results = await self._many([arg for arg, _ in batch])
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    if isinstance(exc, asyncio.CancelledError):
                        fut.cancel()
                    else:
                        fut.set_exception(_copy_error(exc))
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
        finally:
            self.release()

    async def drain(self) -> None:
        """Wait for batches already started (used by close())."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _copy_error(exc: BaseException) -> BaseException:
    # One exception object raised in many tasks would share (and garble) one traceback.
    if isinstance(exc, StateBackendError):
        copy = StateBackendError.__new__(StateBackendError)
        copy.args, copy.backend, copy.url = exc.args, exc.backend, exc.url
        copy.__cause__ = exc.__cause__
        return copy
    return exc


# --- filters ----------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    t = type(value)
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    return "object"


class _FilterSQL:
    """Compiles filters to a WHERE fragment with bound parameters (ops.match is the reference)."""

    def __init__(self, first_param: int) -> None:
        self.params: list[Any] = []
        self._next = first_param

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        ref = f"${self._next}::{cast}"
        self._next += 1
        return ref

    def field(self, path: tuple[str, ...]) -> str:
        # `->` with a text key is NULL on arrays and scalars, exactly like ops.resolve's "missing".
        expr = "value"
        for seg in path:
            expr = f"({expr} -> {self.param(seg, 'text')})"
        return expr

    def compile(self, f: Filter) -> str:
        op, operand = f.op, f.value
        kind = _json_type(operand)
        if (op in ("gt", "gte", "lt", "lte") and kind not in ("number", "string")) or (
            op in ("startsWith", "endsWith") and kind != "string"
        ):
            return "FALSE"  # ops.match: an operand of these types never matches
        field = self.field(f.path)
        text = f"({field} #>> '{{}}')"
        if op == "isNull":
            return f"({field} IS NULL OR {field} = 'null'::jsonb)"
        if op == "isNotNull":
            return f"({field} IS NOT NULL AND {field} <> 'null'::jsonb)"
        if op == "eq":
            # jsonb equality: numbers by value (1 = 1.0), true <> 1, containers element by element.
            return f"({field} = {self.param(encode(operand), 'jsonb')})"
        if op == "neq":
            typ = self.param(kind, "text")
            return f"(jsonb_typeof({field}) = {typ} AND {field} <> {self.param(encode(operand), 'jsonb')})"
        if op in ("gt", "gte", "lt", "lte"):
            sql_op = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
            if kind == "number":
                # jsonb orders two numbers numerically (never as text).
                return f"(jsonb_typeof({field}) = 'number' AND {field} {sql_op} {self.param(encode(operand), 'jsonb')})"
            if kind == "string":
                # jsonb would compare strings with the database collation; code point order is COLLATE "C".
                return (
                    f"(jsonb_typeof({field}) = 'string'"
                    f' AND {text} COLLATE "C" {sql_op} {self.param(operand, "text")} COLLATE "C")'
                )
        if op in ("contains", "notContains"):
            neg = "NOT " if op == "notContains" else ""
            member = (
                f"{neg}EXISTS (SELECT 1 FROM jsonb_array_elements({field}) AS e(v)"
                f" WHERE e.v = {self.param(encode(operand), 'jsonb')})"
            )
            if kind == "string":
                sub = f"{neg}(strpos({text}, {self.param(operand, 'text')}) > 0)"
                return (
                    f"(CASE jsonb_typeof({field}) WHEN 'string' THEN {sub} WHEN 'array' THEN {member} ELSE FALSE END)"
                )
            return f"(CASE jsonb_typeof({field}) WHEN 'array' THEN {member} ELSE FALSE END)"
        # startsWith / endsWith
        s = self.param(operand, "text")
        side = "left" if op == "startsWith" else "right"
        return (
            f'(jsonb_typeof({field}) = \'string\' AND {side}({text}, char_length({s})) COLLATE "C" = {s} COLLATE "C")'
        )


# --- the adapter ------------------------------------------------------------------------------------


def _dsn(url: str, sslmode: str | None) -> str:
    """The URL as asyncpg wants it: no ``+asyncpg`` driver suffix, ``sslmode`` added to the query."""
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    base = scheme.lower().split("+", 1)[0]
    if base not in ("postgresql", "postgres"):
        raise StateConfigError(
            f"{mask_url(url)!r} is not a Postgres URL; use postgresql://user:password@host:5432/database"
        )
    dsn = f"postgresql://{rest}"
    if sslmode is None:
        return dsn
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "sslmode"]
    query.append(("sslmode", sslmode))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _check_location(url: str) -> None:
    """Refuse a URL whose host or port cannot be read, without echoing any part of it but the masked form."""
    try:
        parts = urlsplit(url)
        if "," not in parts.netloc:  # asyncpg also takes several hosts: host1:5432,host2:5432
            _ = parts.hostname, parts.port
    except ValueError:
        raise StateConfigError(
            f"{mask_url(url)!r} is not a valid Postgres URL: its host or port cannot be read. Characters such as"
            " @ : / % in the user or password must be percent-encoded (urllib.parse.quote(password, safe=''))"
        ) from None


_SSLMODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class PostgresAdapter(StateAdapter):
    """State in the ``motia_state`` table of a Postgres database, shared by many workers and hosts."""

    backend = "postgres"

    def __init__(
        self,
        url: str,
        *,
        migrate: str = "auto",
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float | None = _DEFAULT_COMMAND_TIMEOUT,
        sslmode: str | None = None,
    ) -> None:
        if sslmode is not None and sslmode not in _SSLMODES:
            raise StateConfigError(f"sslmode {sslmode!r} is not one of {', '.join(_SSLMODES)}")
        if type(pool_size) is not int or pool_size < 1:
            raise StateConfigError(f"pool_size must be an int >= 1, got {pool_size!r}")
        self._dsn = _dsn(url, sslmode)
        _check_location(url)
        self._url = url if sslmode is None else _with_query(url, "sslmode", sslmode)
        self._migrate = migrate
        self._pool_size = pool_size
        self._connect_timeout = float(connect_timeout)
        self._command_timeout = None if command_timeout is None else float(command_timeout)
        self._pool: Any = None
        self._connect_lock: asyncio.Lock | None = None
        self._contended_until = 0.0
        self._new_batchers()

    def _new_batchers(self) -> None:
        # Fresh with every pool: a pool (and its batches) belongs to one event loop.
        self._gets: _Batcher[tuple[str, str], Any] = _Batcher(self._get_one, self._get_batch, _IN_FLIGHT)
        self._sets: _Batcher[tuple[str, str, str, float | None], Any] = _Batcher(
            self._set_one, self._set_batch, _IN_FLIGHT
        )

    def __repr__(self) -> str:
        return f"PostgresAdapter({mask_url(self._url)!r}, pool_size={self._pool_size})"

    @property
    def url(self) -> str:
        """The URL with the password masked."""
        return mask_url(self._url)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._pool is not None:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._pool is not None:
                return
            from ..migrate import ensure_schema

            await ensure_schema(self._url, self._migrate, connect_timeout=self._connect_timeout)
            try:
                async with asyncio.timeout(self._connect_timeout + 1.0):
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        timeout=self._connect_timeout,
                        command_timeout=self._command_timeout,
                        reset=_keep_session,
                        server_settings=_SESSION,
                    )
                    self._new_batchers()
            except _DRIVER_ERRORS as exc:
                raise self._error(exc) from exc
            except ValueError as exc:  # asyncpg rejects a malformed DSN or option value
                raise StateConfigError(f"{mask_url(self._url)!r}: {mask_secrets(str(exc), self._url)}") from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # Batches already started finish (their callers get answers), then connections close
            # gracefully; anything still stuck after the timeout (a statement waiting on a lock) is cut.
            async with asyncio.timeout(self._connect_timeout):
                await self._gets.drain()
                await self._sets.drain()
                await pool.close()
        except (TimeoutError, *_DRIVER_ERRORS):
            pool.terminate()

    def translate_error(self, exc: Exception) -> Exception | None:
        if isinstance(exc, StateError):
            return exc
        if isinstance(exc, _DRIVER_ERRORS):
            return self._error(exc)
        return None

    def _error(self, exc: BaseException) -> StateBackendError:
        err = StateBackendError(_describe(exc, self._connect_timeout), backend="postgres", url=self._url)
        err.__cause__ = exc
        return err

    async def _require_pool(self) -> Any:
        if self._pool is None:
            await self.connect()
        return self._pool

    # --- running statements ---------------------------------------------------------------------------

    async def _run(self, method: str, sql: str, args: tuple[Any, ...], *, read: bool) -> Any:
        """``pool.<method>(sql, *args)``, retried when that is safe, driver errors wrapped."""
        pool = self._pool if self._pool is not None else await self._require_pool()
        attempt = 0
        while True:
            try:
                return await getattr(pool, method)(sql, *args)
            except _DRIVER_ERRORS as exc:
                attempt += 1
                await self._after_failure(exc)
                if not self._retryable(exc, read, attempt):
                    raise self._error(exc) from exc
                pool = await self._require_pool()

    async def _again(self, exc: BaseException, method: str, sql: str, args: tuple[Any, ...], *, read: bool) -> Any:
        """After ``exc`` from a direct pool call: run the statement again if that is safe, else raise."""
        await self._after_failure(exc)
        if not self._retryable(exc, read, 1):
            raise self._error(exc) from exc
        return await self._run(method, sql, args, read=read)

    async def _after_failure(self, exc: BaseException) -> None:
        # One lost connection usually means the server restarted: every pooled connection is dead, so
        # replace them all at their next acquire instead of failing once per stale connection.
        if _connection_lost(exc) and self._pool is not None:
            await self._pool.expire_connections()

    @staticmethod
    def _retryable(exc: BaseException, read: bool, attempt: int) -> bool:
        if isinstance(exc, _ROLLED_BACK):
            return attempt <= 5
        if attempt > 1:
            return False
        if read:
            return _connection_lost(exc)
        return _not_sent(exc)

    # --- single entries -------------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> Any:
        gets, pool = self._gets, self._pool
        if pool is None or gets.pending is not None or gets.in_flight >= _IN_FLIGHT:
            return await gets((scope, key))
        # The direct path of _Batcher.__call__, inlined: at concurrency 1 every call takes it, and each
        # coroutine layer saved is a measurable share of a ~100 µs round trip.
        gets.in_flight += 1
        try:
            text = await pool.fetchval(_GET, scope, key)
        except _DRIVER_ERRORS as exc:
            text = await self._again(exc, "fetchval", _GET, (scope, key), read=True)
        finally:
            gets.release()
        return None if text is None else decode(text)

    async def _get_one(self, arg: tuple[str, str]) -> Any:
        text = await self._run("fetchval", _GET, arg, read=True)
        return None if text is None else decode(text)

    async def _get_batch(self, args: list[tuple[str, str]]) -> list[Any]:
        wanted = list(dict.fromkeys(args))
        rows = await self._run("fetch", _GET_BATCH, ([s for s, _ in wanted], [k for _, k in wanted]), read=True)
        found = {(r[0], r[1]): r[2] for r in rows}
        # decode per caller: each gets its own object even when two asked for the same key.
        return [None if (text := found.get(a)) is None else decode(text) for a in args]

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        row = await self._run("fetchrow", _GET_ENTRY, (scope, key), read=True)
        return None if row is None else Entry(decode(row[0]), row[1])

    async def set(self, scope: str, key: str, value: Any) -> None:
        await self.set_entry(scope, key, value, None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        sets = self._sets
        arg = (scope, key, encode(value), ttl)
        if self._pool is None or sets.pending is not None or sets.in_flight >= _IN_FLIGHT:
            return await sets(arg)
        sets.in_flight += 1  # the direct path of _Batcher.__call__, inlined (see get)
        try:
            return await self._set_one(arg)
        finally:
            sets.release()

    async def _set_one(self, arg: tuple[str, str, str, float | None]) -> Any:
        for _ in range(_MAX_RETRIES):
            row = await self._run("fetchrow", _SET, arg, read=False)
            if row[1]:
                old = row[0]
                return None if old is None else decode(old)
            # Another writer created the key after this statement's snapshot: nothing was written.
        raise self._error(RuntimeError(f"set of scope {arg[0]!r} key {arg[1]!r} kept racing with other writers"))

    async def _set_batch(self, args: list[tuple[str, str, str, float | None]]) -> list[Any | BaseException]:
        """Each caller's old value, or the error of its own write; a failure never hides a write that happened."""
        # A key may appear twice in one batch: rounds of distinct keys, in call order, so the later
        # write wins and each caller gets the value its write replaced.
        results: list[Any | BaseException] = [None] * len(args)
        rounds: list[list[int]] = []
        seen: dict[tuple[str, str], int] = {}
        for i, (scope, key, _, _) in enumerate(args):
            n = seen.get((scope, key), 0)
            seen[(scope, key)] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(i)
        for r, members in enumerate(rounds):
            todo, error = await self._set_round(args, members, results)
            if error is None:
                continue
            if isinstance(error.__cause__, asyncpg.PostgresError):
                # A statement error (not a lost connection): give every caller its own outcome.
                if len(todo) == 1:
                    results[todo[0]] = error
                    continue
                for i in todo:
                    try:
                        results[i] = await self._set_one(args[i])
                    except StateBackendError as single_exc:
                        results[i] = single_exc
                continue
            # Lost connection: the unwritten calls of this round and of every later round fail alike.
            for i in [*todo, *(i for later in rounds[r + 1 :] for i in later)]:
                results[i] = _copy_error(error)
            break
        return results

    async def _set_round(
        self, args: list[tuple[str, str, str, float | None]], members: list[int], results: list[Any | BaseException]
    ) -> tuple[list[int], StateBackendError | None]:
        """Write ``members`` (distinct keys); on failure, return the unwritten indices and the error."""
        todo = {(args[i][0], args[i][1]): i for i in members}
        for _ in range(_MAX_RETRIES):
            batch = [args[i] for i in todo.values()]
            try:
                rows = await self._run(
                    "fetch",
                    _SET_BATCH,
                    ([a[0] for a in batch], [a[1] for a in batch], [a[2] for a in batch], [a[3] for a in batch]),
                    read=False,
                )
            except StateBackendError as exc:
                return list(todo.values()), exc
            for scope, key, old, written in rows:
                if written:
                    results[todo.pop((scope, key))] = None if old is None else decode(old)
            if not todo:
                return [], None
        return list(todo.values()), self._error(RuntimeError("a batched set kept racing with other writers"))

    async def delete(self, scope: str, key: str) -> None:
        await self.delete_entry(scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        row = await self._run("fetchrow", _DELETE, (scope, key), read=False)
        if row is None or not row[1]:
            return None
        return decode(row[0])

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        if loop.time() >= self._contended_until:
            for _ in range(_OPTIMISTIC_TRIES):
                done = await self._update_optimistic(scope, key, apply, ttl_if_new)
                if done is not None:
                    return done
            # Lost races: writers are contending; lock first for a while (cheaper than failing again).
            self._contended_until = loop.time() + _CONTENDED_FOR
        for _ in range(_MAX_RETRIES):
            done = await self._update_locked(scope, key, apply, ttl_if_new)
            if done is not None:
                return done
        raise self._error(RuntimeError(f"update of scope {scope!r} key {key!r} kept racing with other writers"))

    async def _update_optimistic(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any] | None:
        """Read the row and its version, write only if unchanged; None when another writer came first."""
        # Straight to the pool (the hot path of update at low concurrency); _again handles failures.
        pool = self._pool if self._pool is not None else await self._require_pool()
        try:
            row = await pool.fetchrow(_READ_VERSIONED, scope, key)
        except _DRIVER_ERRORS as exc:
            row = await self._again(exc, "fetchrow", _READ_VERSIONED, (scope, key), read=True)
        live = row is not None and row[1]
        old = decode(row[0]) if live else None
        new = apply(old)
        text = encode(new)
        sql: str
        args: tuple[Any, ...]
        if row is None:
            sql, args = _INSERT_NEW, (scope, key, text, ttl_if_new)
        elif live:
            sql, args = _CAS_LIVE, (scope, key, text, row[2])
        else:  # expired: the entry starts again, with the expiry of a new one
            sql, args = _CAS_EXPIRED, (scope, key, text, row[2], ttl_if_new)
        try:
            ok = await pool.fetchval(sql, *args)
        except _DRIVER_ERRORS as exc:
            ok = await self._again(exc, "fetchval", sql, args, read=False)
        return None if ok is None else (old, new)

    async def _update_locked(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any] | None:
        """The same under the row lock, in one transaction; None when a new key was created meanwhile."""
        pool = await self._require_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(_READ_LOCKED, scope, key)
                live = row is not None and row[1]
                old = decode(row[0]) if live else None
                new = apply(old)  # raising here rolls the transaction back: nothing is written
                text = encode(new)
                if row is None:
                    if await conn.fetchval(_INSERT_NEW, scope, key, text, ttl_if_new) is None:
                        return None
                elif live:
                    await conn.execute(_WRITE_LOCKED_LIVE, scope, key, text)
                else:
                    await conn.execute(_WRITE_LOCKED_EXPIRED, scope, key, text, ttl_if_new)
        except _ROLLED_BACK:
            return None
        except _DRIVER_ERRORS as exc:
            await self._after_failure(exc)
            raise self._error(exc) from exc
        return old, new

    async def ttl(self, scope: str, key: str) -> float | None:
        row = await self._run("fetchrow", _TTL, (scope, key), read=True)
        if row is None or row[0] is None:
            return None
        return max(float(row[0]), 0.0)

    # --- scopes ---------------------------------------------------------------------------------------

    async def clear(self, scope: str) -> int:
        return int(await self._run("fetchval", _CLEAR, (scope,), read=False))

    async def cleanup(self) -> int:
        removed = 0
        while True:
            status = await self._run("execute", _CLEANUP, (), read=False)
            n = int(status.rsplit(" ", 1)[-1])
            removed += n
            if n < _CLEANUP_BATCH:
                return removed

    async def keys(self, scope: str) -> list[str]:
        return [r[0] for r in await self._run("fetch", _KEYS, (scope,), read=True)]

    async def list_groups(self) -> list[str]:
        return [r[0] for r in await self._run("fetch", _GROUPS, (), read=True)]

    async def values(self, scope: str) -> list[Any]:
        return [decode(r[0]) for r in await self._run("fetch", _VALUES, (scope,), read=True)]

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        where = [_LIVE]
        args: list[Any] = []
        if scope is not None:
            args.append(scope)
            where.append("scope = $1")
        if after is not None:
            # The column's COLLATE "C" wins over the parameter's default collation: code point order, and
            # the primary key index serves the range together with ORDER BY key and LIMIT.
            args.append(after)
            where.append(f"key > ${len(args)}")
        compiler = _FilterSQL(len(args) + 1)
        where.extend(compiler.compile(f) for f in filters)
        args.extend(compiler.params)
        sql = f"SELECT scope, key, value, expires_at FROM {_T} WHERE {' AND '.join(where)} ORDER BY scope, key"
        if limit is not None:
            args.append(limit)
            sql += f" LIMIT ${len(args)}"
        rows = await self._run("fetch", sql, tuple(args), read=True)
        return [StateItem(r[0], r[1], decode(r[2]), r[3]) for r in rows]

    # --- batches --------------------------------------------------------------------------------------

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        rows = await self._run("fetch", _GET_MANY, (scope, list(keys)), read=True)
        return {r[0]: decode(r[1]) for r in rows}

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        keys = list(mapping)
        await self._run("execute", _SET_MANY, (scope, keys, [encode(mapping[k]) for k in keys], ttl), read=False)

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        return int(await self._run("fetchval", _DELETE_MANY, (scope, list(keys)), read=False))


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: nothing to do, because no statement here changes session state.

    asyncpg's default reset sends RESET ALL / UNLISTEN / CLOSE ALL / pg_advisory_unlock_all on every
    release: a second round trip per operation. The pool still rolls back a transaction left open.
    """


def _with_query(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name, value))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
