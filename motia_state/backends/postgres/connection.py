"""The Postgres backend's connection machinery: the asyncpg pool, retries and error translation.

Every statement runs on a pooled connection through :meth:`Pool.run`, which retries what is safe to run
again (a read after a lost connection, a write that never reached the server, a statement the server
rolled back) and turns driver errors into :class:`StateBackendError` saying what to do.

Behind a transaction pooler (PgBouncer ``pool_mode = transaction``) consecutive statements of one asyncpg
connection may run on different server connections, so nothing may live in the server session: the pool
then sends no session setting and keeps no prepared statement (``statement_cache_size=0``: asyncpg sends
each statement's Parse again together with its Bind and Execute, in one message sequence, which the pooler
never splits). The pool knows it is behind a pooler when the URL says ``statement_cache_size=0``, when the
server refuses the session setting at startup (PgBouncer: "unsupported startup parameter"), or when the
setting silently did not arrive (a pooler set to ignore it; the adapter reads it back at connect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from ...errors import StateBackendError, StateConfigError
from ...sql import CHANGES_TABLE, TABLE_NAME
from ...sql.connect import postgres_target
from ...urls import StoreURL

__all__ = ["DRIVER_ERRORS", "ROLLED_BACK", "SESSION_PLAN_MODE", "Pool", "pooler_refused_startup"]

# Plan each prepared statement once: the batched statements take arrays, for which Postgres would
# otherwise re-plan every execution (a custom plan per array), costing more than running them.
# Direct connections only: a transaction pooler would refuse it or drop it.
_SESSION: Final = {"plan_cache_mode": "force_generic_plan"}
#: The value of plan_cache_mode on a connection that received _SESSION.
SESSION_PLAN_MODE: Final = _SESSION["plan_cache_mode"]
_log = logging.getLogger("motia_state")
# Seconds one statement may take before it fails with StateBackendError: a frozen server or network must
# not hang a worker forever. Far above anything this adapter sends (cleanup batches, lock waits included).
DEFAULT_COMMAND_TIMEOUT: Final = 60.0

# Lost connection: a read can always run again; a write only when it never reached the server.
CONNECTION_LOST: Final = (
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
ROLLED_BACK: Final = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


def connection_lost(exc: BaseException) -> bool:
    # TimeoutError is an OSError, but a slow statement (command_timeout) says nothing about the connection.
    return isinstance(exc, CONNECTION_LOST) and not isinstance(exc, TimeoutError)


def not_sent(exc: BaseException) -> bool:
    if isinstance(exc, _NOT_SENT):
        return True
    # asyncpg checks the connection before writing to it: this message means nothing was sent.
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def pooler_refused_startup(exc: BaseException) -> str | None:
    """The startup parameter a pooler refused (PgBouncer: "unsupported startup parameter: X"), or None."""
    text = str(exc)
    marker = "unsupported startup parameter"
    if not isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError) or marker not in text:
        return None
    rest = text.split(marker, 1)[1].strip(": \n").split()
    return rest[0] if rest else "?"


def describe(exc: BaseException, connect_timeout: float) -> str:
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
    refused = pooler_refused_startup(exc)
    if refused is not None:
        return (
            f"the connection pooler refuses the startup parameter {refused} ({reason}); remove it from the URL"
            " (?options=, application_name) or list it in the pooler's ignore_startup_parameters"
        )
    if isinstance(exc, asyncpg.InvalidSQLStatementNameError | asyncpg.DuplicatePreparedStatementError):
        return (
            f"prepared statements are being lost between statements ({reason}): a transaction pooler is in"
            " between; add ?statement_cache_size=0 to the URL"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"the database does not exist ({reason}); create it (CREATE DATABASE) or fix the URL"
    if isinstance(exc, asyncpg.UndefinedTableError):
        table = CHANGES_TABLE if CHANGES_TABLE in str(exc) else TABLE_NAME
        return f"the {table} table is missing ({reason}); run `motia-state migrate` or use migrate: auto"
    if isinstance(exc, OSError | asyncpg.ConnectionDoesNotExistError | asyncpg.CannotConnectNowError):
        return f"cannot reach the server ({reason}); check that Postgres is running and the URL's host and port"
    return reason


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: nothing to do, because no statement here changes session state.

    asyncpg's default reset sends RESET ALL / UNLISTEN / CLOSE ALL / pg_advisory_unlock_all on every
    release: a second round trip per operation. The pool still rolls back a transaction left open.
    """


class Pool:
    """An asyncpg pool for one store URL, opened on demand through ``reopen`` (the adapter's connect)."""

    def __init__(
        self,
        url: StoreURL,
        *,
        sslmode: str | None,
        pool_size: int,
        connect_timeout: float,
        command_timeout: float | None,
        reopen: Callable[[], Awaitable[None]],
    ) -> None:
        if type(pool_size) is not int or pool_size < 1:
            raise StateConfigError(f"pool_size must be an int >= 1, got {pool_size!r}")
        self.url = url
        self.target = postgres_target(url, sslmode)
        #: Behind a transaction pooler: no session setting, no kept prepared statement, no LISTEN.
        self.pooled = self.target.pooled
        self.pool_size = pool_size
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = None if command_timeout is None else float(command_timeout)
        self.pool: Any = None
        self._reopen = reopen

    async def open(self) -> None:
        """Create the pool (one connection at once, up to ``pool_size``); behind a pooler that refuses the
        session setting, again without it."""
        try:
            try:
                self.pool = await self._create()
            except DRIVER_ERRORS as exc:
                refused = pooler_refused_startup(exc)
                if self.pooled or refused not in _SESSION:
                    raise
                self.pooled = True
                _log.info("%s: a connection pooler refused %s: running in pooler mode", self.url.masked, refused)
                self.pool = await self._create()
        except DRIVER_ERRORS as exc:
            raise self.error(exc) from exc
        except ValueError as exc:  # asyncpg rejects a malformed DSN or option value
            raise StateConfigError(f"{self.url.masked!r}: {self.url.redact(str(exc))}") from None

    async def _create(self) -> Any:
        options = dict(self.target.driver_options)
        settings = dict(self.target.server_settings)
        if self.pooled:
            options["statement_cache_size"] = 0
        else:
            settings.update(_SESSION)
        async with asyncio.timeout(self.connect_timeout + 1.0):
            return await asyncpg.create_pool(
                self.target.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                reset=_keep_session,
                server_settings=settings,
                **options,
            )

    async def reopen_pooled(self) -> None:
        """Switch to pooler mode (the session setting did not arrive): a new pool, the old one closed."""
        _log.info("%s: the session settings did not reach the server: running in pooler mode", self.url.masked)
        self.pooled = True
        await self.close()
        await self.open()

    async def close(self, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Close gracefully (after ``before``, e.g. draining batches) or cut what is stuck after the timeout."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                if before is not None:
                    await before()
                await pool.close()
        except (TimeoutError, *DRIVER_ERRORS):
            pool.terminate()

    def error(self, exc: BaseException) -> StateBackendError:
        """A driver error as StateBackendError (the password never shown)."""
        message = self.url.redact(describe(exc, self.connect_timeout))
        err = StateBackendError(message, backend="postgres", url=self.url.masked)
        err.__cause__ = exc
        return err

    async def require(self) -> Any:
        """The open pool, connecting first if needed."""
        if self.pool is None:
            await self._reopen()
        return self.pool

    async def run(self, method: str, sql: str, args: tuple[Any, ...], *, read: bool) -> Any:
        """``pool.<method>(sql, *args)``, retried when that is safe, driver errors wrapped."""
        pool = self.pool if self.pool is not None else await self.require()
        attempt = 0
        while True:
            try:
                return await getattr(pool, method)(sql, *args)
            except DRIVER_ERRORS as exc:
                attempt += 1
                await self.after_failure(exc)
                if not self.retryable(exc, read, attempt):
                    raise self.error(exc) from exc
                pool = await self.require()

    async def again(self, exc: BaseException, method: str, sql: str, args: tuple[Any, ...], *, read: bool) -> Any:
        """After ``exc`` from a direct pool call: run the statement again if that is safe, else raise."""
        await self.after_failure(exc)
        if not self.retryable(exc, read, 1):
            raise self.error(exc) from exc
        return await self.run(method, sql, args, read=read)

    async def after_failure(self, exc: BaseException) -> None:
        # One lost connection usually means the server restarted: every pooled connection is dead, so
        # replace them all at their next acquire instead of failing once per stale connection.
        if connection_lost(exc) and self.pool is not None:
            _log.warning(
                "%s: lost the connection to Postgres (%s); reconnecting the pool", self.url.masked, type(exc).__name__
            )
            await self.pool.expire_connections()

    @staticmethod
    def retryable(exc: BaseException, read: bool, attempt: int) -> bool:
        if isinstance(exc, ROLLED_BACK):
            return attempt <= 5
        if attempt > 1:
            return False
        if read:
            return connection_lost(exc)
        return not_sent(exc)
