"""Postgres backend: the ``motia_state`` table through an asyncpg pool.

The table and its migrations are SQLAlchemy's (``motia_state.sql``); the hot path is not. Every operation
is one statement (``statements``) on a pooled asyncpg connection (``connection``), so a call costs one round
trip and no BEGIN/COMMIT. ``get`` and ``set`` calls issued while other ones are in flight are gathered into
one statement over ``unnest`` arrays (``batcher``): many concurrent callers then share a round trip, which is
what lets the adapter outrun one-statement-per-call drivers at high concurrency.

The change feed (SPEC §10) is the ``motia_state_changes`` table, written by a database trigger
(``sql/feed.py``): reads are plain queries on the pool, and a waiting reader is woken by the adapter's one
LISTEN connection (``listener``). ``changes: off`` disables that trigger, for every process of the store. A traced
write (``telemetry.OPERATION`` set) sends its statement's ``*_TRACED`` variant, which also puts the traceparent
where the trigger reads it at commit; an untraced one sends exactly the statement it always did.

Production topologies (SPEC §12): ``schema:`` qualifies every table name in every statement (nothing relies
on a session's search_path); behind a transaction pooler (``connection``: detected, or
``?statement_cache_size=0``) LISTEN goes to ``listen_url``, or a poller of the revision stands in for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import asyncpg  # type: ignore[import-untyped]

from ...adapter import Entry, StateAdapter, StateItem, server_attributes
from ...changes import DEFAULT_RETENTION, Change, Event, log_compaction
from ...errors import ChangesCompactedError, StateBackendError, StateConfigError, StateError
from ...ops import Filter, match
from ...sql import TABLE_NAME, check_schema, qualified
from ...sql.connect import postgres_target
from ...sql.feed import POSTGRES_TRIGGER, notify_channel, postgres_switch
from ...sql.migrate import at_head
from ...telemetry import OPERATION
from ...urls import StoreURL, parse_url
from ...values import SharedText, decode, encode
from .batcher import Batcher, copy_error
from .connection import DEFAULT_COMMAND_TIMEOUT, DRIVER_ERRORS, ROLLED_BACK, SESSION_PLAN_MODE, Pool
from .listener import POLL, Listener, Poller
from .statements import CLEANUP_BATCH, COMPACT_BATCH, statements

if TYPE_CHECKING:
    from .triggers import PostgresTriggerStore

__all__ = ["PostgresAdapter"]

_OPTIMISTIC_TRIES: Final = 1
# Statements of one kind (get, set) in flight before further calls queue for a batch. One: measured
# against 2, 3 and 16 at concurrency 2-16, it makes the largest batches (one commit for all queued sets)
# and the most operations per second; a lone call still goes straight out.
_IN_FLIGHT: Final = 1
_CONTENDED_FOR: Final = 1.0  # seconds of going straight to the locking update after a lost race
_MAX_RETRIES: Final = 50
_log = logging.getLogger("motia_state")

#: A set's statement arguments (scope, key, JSON text, ttl), and the caller's traceparent when it was traced:
#: the untraced tuple is exactly the untraced statement's arguments.
_SetArg = tuple[str, str, str, float | None] | tuple[str, str, str, float | None, str]
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _batch_trace(batch: Sequence[_SetArg]) -> str | None:
    """The trace setting of one batched statement: None when no caller was traced, the traceparent when every
    caller had the same, else the map ``{scope: {key: traceparent}}`` the trigger looks each row up in (nested,
    not joined: a scope or key may hold any character)."""
    traces = {a[4] for a in batch if len(a) == 5}
    if not traces:
        return None
    if len(traces) == 1 and all(len(a) == 5 for a in batch):
        return traces.pop()
    by_scope: dict[str, dict[str, str]] = {}
    for a in batch:
        if len(a) == 5:
            by_scope.setdefault(a[0], {})[a[1]] = a[4]
    return _dumps(by_scope)


class PostgresAdapter(StateAdapter):
    """State in the ``motia_state`` table of a Postgres database, shared by many workers and hosts."""

    backend = "postgres"

    def __init__(
        self,
        url: str | StoreURL,
        *,
        migrate: str = "auto",
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        sslmode: str | None = None,
        changes: bool = True,
        changes_retention: float = DEFAULT_RETENTION,
        schema: str | None = None,
        listen_url: str | StoreURL | None = None,
    ) -> None:
        parsed = url if isinstance(url, StoreURL) else parse_url(url)
        if sslmode is not None:
            parsed = parsed.replace(query=[*((k, v) for k, v in parsed.query if k != "sslmode"), ("sslmode", sslmode)])
        self._url = parsed
        self._migrate = migrate
        if schema is not None:
            try:
                check_schema(schema)
            except ValueError as exc:
                raise StateConfigError(f"schema must be {exc}, got {schema!r}") from None
        self._schema = schema
        self._q = statements(schema)
        self._table = qualified(TABLE_NAME, schema)
        self._listen_url = None if listen_url is None else listen_target_url(listen_url)
        self._listen_target = None if self._listen_url is None else postgres_target(self._listen_url)
        self._pg = Pool(
            parsed,
            sslmode=None,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            reopen=self.connect,
        )
        self._connect_lock: asyncio.Lock | None = None
        self._contended_until = 0.0
        # Whether a traced set was ever made: until then a batch of sets is not even scanned for traceparents.
        self._sets_traced = False
        self.changes_off = not changes
        self._retention = float(changes_retention)
        self._new_batchers()
        self._listener = self._new_listener()
        self._trigger_store: PostgresTriggerStore | None = None

    def _new_batchers(self) -> None:
        # Fresh with every pool: a pool (and its batches) belongs to one event loop.
        self._gets: Batcher[tuple[str, str], Any] = Batcher(self._get_one, self._get_batch, _IN_FLIGHT)
        self._sets: Batcher[_SetArg, Any] = Batcher(self._set_one, self._set_batch, _IN_FLIGHT)
        self._lists: Batcher[str, list[Any]] = Batcher(self._values_one, self._values_batch, _IN_FLIGHT)

    def _new_listener(self) -> Listener | Poller:
        # LISTEN never goes through a transaction pooler: listen_url, else polling.
        if self._listen_target is None and self._pg.pooled:
            return Poller(self._poll_revision)
        return Listener(self._open_listen_connection, self._pg.connect_timeout, notify_channel(self._schema))

    async def _poll_revision(self) -> int:
        return int(await self._pg.run("fetchval", self._q.REVISION, (), read=True))

    async def _open_listen_connection(self) -> Any:
        target = self._listen_target or self._pg.target
        async with asyncio.timeout(self._pg.connect_timeout + 1.0):
            return await asyncpg.connect(
                target.dsn,
                timeout=self._pg.connect_timeout,
                server_settings=dict(target.server_settings),
                statement_cache_size=0,  # LISTEN is all it sends
            )

    def __repr__(self) -> str:
        extra = "" if self._schema is None else f", schema={self._schema!r}"
        return f"PostgresAdapter({self._url.masked!r}, pool_size={self._pg.pool_size}{extra})"

    def telemetry_attributes(self) -> dict[str, str | int]:
        """``postgresql``, the table (schema-qualified with ``schema:``), the database, the first host."""
        return server_attributes(
            self._url,
            "postgresql",
            TABLE_NAME if self._schema is None else f"{self._schema}.{TABLE_NAME}",
            self._url.path.lstrip("/") or None,
            5432,
        )

    @property
    def schema(self) -> str | None:
        """The schema holding the tables (None: the connection's search_path)."""
        return self._schema

    @property
    def pooled(self) -> bool:
        """Whether the adapter runs as behind a transaction pooler (detected at connect, or from the URL)."""
        return self._pg.pooled

    @property
    def watch_mode(self) -> str:
        """How a waiting watch learns of a commit: ``listen`` (the URL's server), ``listen_url`` or ``poll``."""
        if isinstance(self._listener, Poller):
            return "poll"
        return "listen" if self._listen_target is None else "listen_url"

    @property
    def pool_size(self) -> int:
        """The most connections the pool opens."""
        return self._pg.pool_size

    @property
    def url(self) -> str:
        """The URL with the password masked."""
        return self._url.masked

    def trigger_store(self) -> PostgresTriggerStore:
        """Where durable triggers keep their progress (SPEC §11): tables of this database, on this pool."""
        if self._trigger_store is None:
            from .triggers import PostgresTriggerStore  # imported when triggers run, not by every CLI call

            self._trigger_store = PostgresTriggerStore(self._pg, self._schema)
        return self._trigger_store

    # --- lifecycle ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._pg.pool is not None:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._pg.pool is not None:
                return
            await self._pg.open()
            try:
                # Usual case, schema at head: one query on the new pool, no SQLAlchemy nor Alembic import;
                # it also says whether the change trigger fires.
                version, recording, plan_mode = (
                    (None, None, None) if self._migrate == "off" else await self._schema_version()
                )
                if self._migrate != "off" and not at_head(version):
                    from ...sql.migrate import ensure_schema

                    await ensure_schema(
                        self._url, self._migrate, connect_timeout=self._pg.connect_timeout, schema=self._schema
                    )
                    recording = None
                if recording is None:
                    recording, plan_mode = await self._fetch_on_pool(self._q.TRIGGER_ENABLED)
                if not self._pg.pooled and plan_mode != SESSION_PLAN_MODE:
                    # The session setting sent at startup never arrived: a pooler dropped it.
                    await self._pg.reopen_pooled()
                if recording is not None and recording == self.changes_off:
                    await self._switch_changes()
            except BaseException:
                await self._pg.close()
                raise
            self._new_batchers()
            await self._listener.close()
            self._listener = self._new_listener()

    async def _fetch_on_pool(self, sql: str) -> tuple[Any, Any]:
        try:
            row = await self._pg.pool.fetchrow(sql)
        except DRIVER_ERRORS as exc:
            raise self._pg.error(exc) from exc
        return row[0], row[1]

    async def _schema_version(self) -> tuple[str | None, bool | None, str | None]:
        """The stored revision, whether the change trigger fires, and the session's plan_cache_mode."""
        try:
            rows = await self._pg.pool.fetch(self._q.SCHEMA_VERSION)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return None, None, None
        except DRIVER_ERRORS as exc:
            raise self._pg.error(exc) from exc
        return (str(rows[0][0]), rows[0][1], rows[0][2]) if len(rows) == 1 else (None, None, None)

    async def _switch_changes(self) -> None:
        """Enable or disable the change trigger to match ``changes``: it is the store's switch, not ours."""
        off = self.changes_off
        switch = postgres_switch(self._schema, not off)
        try:
            await self._pg.pool.execute(switch)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise StateConfigError(
                f"changes: {'off' if off else 'on'} needs to {'disable' if off else 'enable'} the trigger"
                f" {POSTGRES_TRIGGER} on table {self._table}, which only the table's owner may do ({exc}):"
                f" connect once as the owner with this setting, or have the owner run"
                f" `{switch}`, or GRANT the owner's role to this user"
            ) from None
        except DRIVER_ERRORS as exc:
            raise self._pg.error(exc) from exc
        _log.warning(
            "%s: changes %s: the change trigger of table %s is now %s; this applies to every process using"
            " this store, whatever its own setting",
            self._url.masked,
            "off" if off else "on",
            self._table,
            "disabled (no change is recorded)" if off else "enabled",
        )

    async def close(self) -> None:
        # Batches already started finish (their callers get answers), then connections close gracefully.
        await self._listener.close()
        await self._pg.close(before=self._drain)

    async def _drain(self) -> None:
        await self._gets.drain()
        await self._sets.drain()
        await self._lists.drain()

    def translate_error(self, exc: Exception) -> Exception | None:
        if isinstance(exc, StateError):
            return exc
        if isinstance(exc, DRIVER_ERRORS):
            return self._pg.error(exc)
        return None

    # --- single entries -------------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> Any:
        gets, pool = self._gets, self._pg.pool
        if pool is None or gets.pending is not None or gets.in_flight >= _IN_FLIGHT or gets.busy:
            return await gets((scope, key))
        # The direct path of _Batcher.__call__, inlined: at concurrency 1 every call takes it, and each
        # coroutine layer saved is a measurable share of a ~100 µs round trip.
        gets.in_flight += 1
        try:
            text = await pool.fetchval(self._q.GET, scope, key)
        except DRIVER_ERRORS as exc:
            text = await self._pg.again(exc, "fetchval", self._q.GET, (scope, key), read=True)
        finally:
            gets.release()
        return None if text is None else decode(text)

    async def _get_one(self, arg: tuple[str, str]) -> Any:
        text = await self._pg.run("fetchval", self._q.GET, arg, read=True)
        return None if text is None else decode(text)

    async def _get_batch(self, args: list[tuple[str, str]]) -> list[Any]:
        wanted = list(dict.fromkeys(args))
        rows = await self._pg.run(
            "fetch", self._q.GET_BATCH, ([s for s, _ in wanted], [k for _, k in wanted]), read=True
        )
        found = {(r[0], r[1]): r[2] for r in rows}
        # decode per caller: each gets its own object even when two asked for the same key.
        return [None if (text := found.get(a)) is None else decode(text) for a in args]

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        row = await self._pg.run("fetchrow", self._q.GET_ENTRY, (scope, key), read=True)
        return None if row is None else Entry(decode(row[0]), row[1])

    async def set(self, scope: str, key: str, value: Any) -> None:
        await self.set_entry(scope, key, value, None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        sets = self._sets
        # Read here, in the caller's task: a batch runs in a task of its own.
        trace = OPERATION.get()
        arg: _SetArg
        if trace:
            arg = (scope, key, encode(value), ttl, trace)
            self._sets_traced = True  # from now on, batches look for traced callers
        else:
            arg = (scope, key, encode(value), ttl)
        if self._pg.pool is None or sets.pending is not None or sets.in_flight >= _IN_FLIGHT or sets.busy:
            return await sets(arg)
        sets.in_flight += 1  # the direct path of _Batcher.__call__, inlined (see get)
        try:
            return await self._set_one(arg)
        finally:
            sets.release()

    async def _set_one(self, arg: _SetArg) -> Any:
        sql = self._q.SET if len(arg) == 4 else self._q.SET_TRACED
        for _ in range(_MAX_RETRIES):
            row = await self._pg.run("fetchrow", sql, arg, read=False)
            if row[1]:
                old = row[0]
                return None if old is None else decode(old)
            # Another writer created the key after this statement's snapshot: nothing was written.
        raise self._pg.error(RuntimeError(f"set of scope {arg[0]!r} key {arg[1]!r} kept racing with other writers"))

    async def _set_batch(self, args: list[_SetArg]) -> list[Any | BaseException]:
        """Each caller's old value, or the error of its own write; a failure never hides a write that happened."""
        # A key may appear twice in one batch: rounds of distinct keys, in call order, so the later
        # write wins and each caller gets the value its write replaced.
        results: list[Any | BaseException] = [None] * len(args)
        rounds: list[list[int]] = []
        seen: dict[tuple[str, str], int] = {}
        for i, arg in enumerate(args):
            n = seen.get((arg[0], arg[1]), 0)
            seen[(arg[0], arg[1])] = n + 1
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
                results[i] = copy_error(error)
            break
        return results

    async def _set_round(
        self, args: list[_SetArg], members: list[int], results: list[Any | BaseException]
    ) -> tuple[list[int], StateBackendError | None]:
        """Write ``members`` (distinct keys); on failure, return the unwritten indices and the error."""
        todo = {(args[i][0], args[i][1]): i for i in members}
        for _ in range(_MAX_RETRIES):
            batch = [args[i] for i in todo.values()]
            arrays = ([a[0] for a in batch], [a[1] for a in batch], [a[2] for a in batch], [a[3] for a in batch])
            trace = _batch_trace(batch) if self._sets_traced else None
            try:
                if trace is None:
                    rows = await self._pg.run("fetch", self._q.SET_BATCH, arrays, read=False)
                else:
                    rows = await self._pg.run("fetch", self._q.SET_BATCH_TRACED, (*arrays, trace), read=False)
            except StateBackendError as exc:
                return list(todo.values()), exc
            for scope, key, old, written in rows if trace is None else (r[:4] for r in rows):
                if written:
                    results[todo.pop((scope, key))] = None if old is None else decode(old)
            if not todo:
                return [], None
        return list(todo.values()), self._pg.error(RuntimeError("a batched set kept racing with other writers"))

    async def delete(self, scope: str, key: str) -> None:
        await self.delete_entry(scope, key)

    async def _write(self, method: str, sql: str, traced: str, args: tuple[Any, ...]) -> Any:
        """``pool.<method>(sql, *args)``; from a traced operation (``telemetry.OPERATION``, read here in the
        caller's task), its ``traced`` variant with the traceparent as the last argument."""
        trace = OPERATION.get()
        if trace:
            return await self._pg.run(method, traced, (*args, trace), read=False)
        return await self._pg.run(method, sql, args, read=False)

    async def delete_entry(self, scope: str, key: str) -> Any:
        row = await self._write("fetchrow", self._q.DELETE, self._q.DELETE_TRACED, (scope, key))
        if row is None or not row[1]:
            return None
        return decode(row[0])

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        trace = OPERATION.get()
        loop = asyncio.get_running_loop()
        if loop.time() >= self._contended_until:
            for _ in range(_OPTIMISTIC_TRIES):
                done = await self._update_optimistic(scope, key, apply, ttl_if_new, trace)
                if done is not None:
                    return done
            # Lost races: writers are contending; lock first for a while (cheaper than failing again).
            self._contended_until = loop.time() + _CONTENDED_FOR
        for _ in range(_MAX_RETRIES):
            done = await self._update_locked(scope, key, apply, ttl_if_new, trace)
            if done is not None:
                return done
        raise self._pg.error(RuntimeError(f"update of scope {scope!r} key {key!r} kept racing with other writers"))

    async def _update_optimistic(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None, trace: str | None
    ) -> tuple[Any, Any] | None:
        """Read the row and its version, write only if unchanged; None when another writer came first."""
        # Straight to the pool (the hot path of update at low concurrency); _again handles failures.
        pool = self._pg.pool if self._pg.pool is not None else await self._pg.require()
        try:
            row = await pool.fetchrow(self._q.READ_VERSIONED, scope, key)
        except DRIVER_ERRORS as exc:
            row = await self._pg.again(exc, "fetchrow", self._q.READ_VERSIONED, (scope, key), read=True)
        live = row is not None and row[1]
        old = decode(row[0]) if live else None
        new = apply(old)
        text = encode(new)
        sql: str
        args: tuple[Any, ...]
        if row is None:
            sql, args = self._q.INSERT_NEW, (scope, key, text, ttl_if_new)
        elif live:
            sql, args = self._q.CAS_LIVE, (scope, key, text, row[2])
        else:  # expired: the entry starts again, with the expiry of a new one
            sql, args = self._q.CAS_EXPIRED, (scope, key, text, row[2], ttl_if_new)
        if trace:  # the same statement, answering the same, that also sets the traceparent
            q = self._q
            sql = q.INSERT_NEW_TRACED if row is None else q.CAS_LIVE_TRACED if live else q.CAS_EXPIRED_TRACED
            args = (*args, trace)
        try:
            ok = await pool.fetchval(sql, *args)
        except DRIVER_ERRORS as exc:
            ok = await self._pg.again(exc, "fetchval", sql, args, read=False)
        return None if ok is None else (old, new)

    async def _update_locked(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None, trace: str | None
    ) -> tuple[Any, Any] | None:
        """The same under the row lock, in one transaction; None when a new key was created meanwhile."""
        pool = await self._pg.require()
        try:
            async with pool.acquire() as conn, conn.transaction():
                if trace:
                    await conn.fetchval(self._q.TRACE, trace)
                row = await conn.fetchrow(self._q.READ_LOCKED, scope, key)
                live = row is not None and row[1]
                old = decode(row[0]) if live else None
                new = apply(old)  # raising here rolls the transaction back: nothing is written
                text = encode(new)
                if row is None:
                    if await conn.fetchval(self._q.INSERT_NEW, scope, key, text, ttl_if_new) is None:
                        return None
                elif live:
                    await conn.execute(self._q.WRITE_LOCKED_LIVE, scope, key, text)
                else:
                    await conn.execute(self._q.WRITE_LOCKED_EXPIRED, scope, key, text, ttl_if_new)
        except ROLLED_BACK:
            return None
        except DRIVER_ERRORS as exc:
            await self._pg.after_failure(exc)
            raise self._pg.error(exc) from exc
        return old, new

    async def ttl(self, scope: str, key: str) -> float | None:
        row = await self._pg.run("fetchrow", self._q.TTL, (scope, key), read=True)
        if row is None or row[0] is None:
            return None
        return max(float(row[0]), 0.0)

    # --- scopes ---------------------------------------------------------------------------------------

    async def clear(self, scope: str) -> int:
        return int(await self._write("fetchval", self._q.CLEAR, self._q.CLEAR_TRACED, (scope,)))

    async def cleanup(self) -> int:
        trace = OPERATION.get()
        removed = 0
        while True:
            if trace:
                n = int(await self._pg.run("fetchval", self._q.CLEANUP_TRACED, (trace,), read=False))
            else:
                status = await self._pg.run("execute", self._q.CLEANUP, (), read=False)
                n = int(status.rsplit(" ", 1)[-1])
            removed += n
            if n < CLEANUP_BATCH:
                break
        await self._compact()
        return removed

    async def _compact(self) -> None:
        """Delete the changes older than ``changes_retention``, one bounded batch at a time."""
        total = 0
        while True:
            status = await self._pg.run("execute", self._q.COMPACT, (self._retention,), read=False)
            removed = int(status.rsplit(" ", 1)[-1])
            total += removed
            if removed < COMPACT_BATCH:
                log_compaction(self._url.masked, total, self._retention)
                return

    # --- the change feed ------------------------------------------------------------------------------

    async def revision(self, scope: str | None) -> int:
        if scope is None:
            return int(await self._pg.run("fetchval", self._q.REVISION, (), read=True))
        return int(await self._pg.run("fetchval", self._q.REVISION_OF_SCOPE, (scope,), read=True))

    async def changes_after(
        self, scope: str | None, key: str | None, after: int, limit: int, wait: float
    ) -> list[Change]:
        if wait <= 0:
            return await self._read_changes(scope, key, after, limit)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        listener = self._listener
        while True:
            # LISTEN is up (or known down) and the generation taken *before* the read: a commit after the
            # read's snapshot bumps the generation, so the wait below returns at once instead of missing it.
            listening = listener.listening()
            generation = listener.generation
            found = await self._read_changes(scope, key, after, limit)  # the pool connection is back after this
            left = deadline - loop.time()
            if found or left <= 0:
                return found
            await listener.wait(generation, left if listening else min(left, POLL))

    async def _read_changes(self, scope: str | None, key: str | None, after: int, limit: int) -> list[Change]:
        if scope is None:
            rows = await self._pg.run("fetch", self._q.CHANGES_AFTER, (after, limit), read=True)
        elif key is None:
            rows = await self._pg.run("fetch", self._q.CHANGES_AFTER_SCOPE, (after, limit, scope), read=True)
        else:
            rows = await self._pg.run("fetch", self._q.CHANGES_AFTER_KEY, (after, limit, scope, key), read=True)
        oldest = rows[0][0]
        # Revisions up to oldest - 1 may have been compacted away: a reader after less may miss some.
        if oldest is not None and after < oldest - 1:
            raise ChangesCompactedError(after, oldest)
        return [_change(r[1:]) for r in rows if r[1] is not None]

    async def key_history(self, scope: str, key: str, before: int | None, limit: int) -> list[Change]:
        # Retained changes only: whatever compaction removed is simply not in the history (no error).
        if before is None:
            rows = await self._pg.run("fetch", self._q.KEY_HISTORY, (scope, key, limit), read=True)
        else:
            rows = await self._pg.run("fetch", self._q.KEY_HISTORY_BEFORE, (scope, key, limit, before), read=True)
        return [_change(r) for r in rows]

    async def keys(self, scope: str) -> list[str]:
        return [r[0] for r in await self._pg.run("fetch", self._q.KEYS, (scope,), read=True)]

    async def list_groups(self) -> list[str]:
        return [r[0] for r in await self._pg.run("fetch", self._q.GROUPS, (), read=True)]

    async def scopes_page(self, after: str | None, limit: int, search: str | None) -> list[str]:
        q = self._q
        args: tuple[Any, ...]
        if search is None:
            sql, args = (q.SCOPES_FIRST, (limit,)) if after is None else (q.SCOPES_AFTER, (limit, after))
        elif after is None:
            sql, args = q.SCOPES_SEARCH, (limit, search)
        else:
            sql, args = q.SCOPES_SEARCH_AFTER, (limit, search, after)
        # Sorted here too: the skip scan yields scope order by construction, not by an ORDER BY.
        return sorted(r[0] for r in await self._pg.run("fetch", sql, args, read=True))

    async def values(self, scope: str) -> list[Any]:
        # Batched like get: lists queued while one is in flight share one statement, a scope asked for by many
        # read once (each caller still decodes its own objects).
        return await self._lists(scope)

    async def _values_one(self, scope: str) -> list[Any]:
        text = await self._pg.run("fetchval", self._q.VALUES_ARRAY, (scope,), read=True)
        return [] if text is None else decode(text)

    async def _values_batch(self, scopes: list[str]) -> list[list[Any] | BaseException]:
        wanted = list(dict.fromkeys(scopes))
        rows = await self._pg.run("fetch", self._q.VALUES_ARRAYS, (wanted,), read=True)
        found = {r[0]: SharedText(r[1]) for r in rows}
        return [[] if (text := found.get(s)) is None else text.value() for s in scopes]

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        query, args, recheck = self._q.items_query(scope, after, filters, limit)
        rows = await self._pg.run("fetch", query, tuple(args), read=True)
        out = [StateItem(r[0], r[1], decode(r[2]), r[3]) for r in rows]
        if recheck:
            out = [item for item in out if match(item.value, recheck)][:limit]
        return out

    # --- batches --------------------------------------------------------------------------------------

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        rows = await self._pg.run("fetch", self._q.GET_MANY, (scope, list(keys)), read=True)
        return {r[0]: decode(r[1]) for r in rows}

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        keys = list(mapping)
        args = (scope, keys, [encode(mapping[k]) for k in keys], ttl)
        await self._write("execute", self._q.SET_MANY, self._q.SET_MANY_TRACED, args)

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        return int(await self._write("fetchval", self._q.DELETE_MANY, self._q.DELETE_MANY_TRACED, (scope, list(keys))))


def _change(r: Any) -> Change:
    """A change from a row (revision, event, scope, key, old_value, new_value, at, traceparent)."""
    return Change(
        r[0],
        cast(Event, r[1]),  # the trigger writes only the four event names
        r[2],
        r[3],
        None if r[4] is None else decode(r[4]),
        None if r[5] is None else decode(r[5]),
        r[6],
        r[7],
    )


def listen_target_url(value: str | StoreURL) -> StoreURL:
    """``listen_url`` parsed: a Postgres URL (StateConfigError naming the option, the password masked)."""
    from .. import resolve

    parsed = value if isinstance(value, StoreURL) else parse_url(value, "listen_url")
    backend, _ = resolve(parsed, "listen_url")
    if backend.name != "postgres":
        raise StateConfigError(
            f"listen_url must be a postgresql:// URL of a direct (session) connection, got {parsed.masked!r}"
        )
    try:
        postgres_target(parsed)  # its query parameters are checked now, not at the first watch
    except StateConfigError as exc:
        raise StateConfigError(f"listen_url: {exc}") from None
    return parsed
