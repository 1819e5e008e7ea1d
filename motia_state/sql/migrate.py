"""Programmatic Alembic: bring the ``motia_state`` table to the right revision, from any event loop.

Every function takes a store URL (``sqlite:///…``, ``postgresql://…`` …, as text or parsed). Migrations
run on a short-lived async engine (NullPool) that opens the database exactly as the adapter does, and whose
connection is handed to ``migrations/env.py`` through ``config.attributes``, so they work inside a running
event loop (no nested ``asyncio.run``).

The scripts are found in an installed wheel (``motia_state/_migrations``) or in a source checkout
(``<repo>/migrations``).

A Postgres store in its own schema (``schema=`` here, ``?schema=`` in the URL, ``schema:`` in config.yml):
the migrations create the schema when missing, and put every table and the version table in it.
Everything runs in transactions with unnamed statements (``connect.engine_args``), so it also works
through PgBouncer in transaction pooling mode; concurrent upgrades are serialised by a transaction-level
advisory lock (released by the COMMIT, never held by a pooled session).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..errors import SchemaOutOfDateError, StateBackendError, StateConfigError, StateError
from ..urls import StoreURL, parse_url
from . import HEAD_REVISION, TABLES, VERSION_TABLE, check_schema, qualified, quote_ident
from .connect import dialect, engine_args, make_sqlite_folder, sqlite_path

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "MIGRATE_MODES",
    "at_head",
    "current",
    "downgrade",
    "ensure_schema",
    "head",
    "include_name",
    "include_name_for",
    "include_object",
    "migrations_dir",
    "offline_sql",
    "pending",
    "split_schema",
    "upgrade",
    "upgrade_connection",
]

_log = logging.getLogger("motia_state")

MIGRATE_MODES: Final = ("auto", "check", "off")

# Fixed key of the Postgres advisory lock serialising concurrent auto-migrations ("motia_st" in ASCII).
_PG_LOCK_KEY: Final = 0x6D6F7469615F7374

_T = TypeVar("_T")


# --- locating the scripts ------------------------------------------------------------------------------


@cache
def migrations_dir() -> Path:
    """The folder holding ``env.py`` and ``versions/``: inside the wheel, else the repo checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations" / "migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise StateConfigError(
        f"motia-state's migration scripts are missing (looked in {package / '_migrations'} and "
        f"{package.parent / 'migrations'}); reinstall the motia-state package"
    )


def _config(
    *,
    url: StoreURL | None = None,
    connection: Connection | None = None,
    buffer: io.StringIO | None = None,
    schema: str | None = None,
) -> Config:
    from alembic.config import Config

    # No ini file: a host application's logging configuration must stay as it is.
    cfg = Config(output_buffer=buffer) if buffer is not None else Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    if url is not None:
        cfg.attributes["url"] = url
    cfg.attributes["schema"] = schema
    return cfg


@cache
def _script() -> ScriptDirectory:
    # Loaded once per process: later connects only compare the stored revision with this head.
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


@cache
def head() -> str:
    """The newest revision shipped with this motia-state."""
    heads = _script().get_heads()
    if len(heads) != 1:
        raise StateConfigError(f"motia-state's migrations have {len(heads)} heads ({heads}); expected one")
    return heads[0]


# --- what autogenerate compares -------------------------------------------------------------------------


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Reflect only our tables: the host application's tables (and its alembic_version) are not ours."""
    if type_ == "table":
        return name in _OURS
    return True


def include_name_for(schema: str | None) -> Callable[[str | None, str, Any], bool]:
    """:func:`include_name` for a store in ``schema``: only that schema is reflected (None: the default one)."""
    if schema is None:
        return include_name

    def include(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return include_name(name, type_, parent_names)

    return include


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Compare only our tables and what hangs off them (columns, indexes, constraints)."""
    if type_ == "table":
        return name in _OURS
    if type_ == "index" and not reflected and compare_to is None and getattr(obj, "_ddl_if", None) is not None:
        # An index created on one dialect only (Index.ddl_if), absent from this database: Alembic's
        # comparison does not know ddl_if, so it would call the index missing on the other dialects.
        return False
    table = getattr(obj, "table", None)
    return table is None or table.name in _OURS


_OURS: Final = frozenset(TABLES)


# --- engines and errors --------------------------------------------------------------------------------


def _url(url: str | StoreURL) -> StoreURL:
    return url if isinstance(url, StoreURL) else parse_url(url)


def split_schema(url: str | StoreURL, schema: str | None = None) -> tuple[StoreURL, str | None]:
    """The URL without its ``?schema=`` parameter, and the schema (the keyword, else the parameter)."""
    parsed = _url(url)
    named = [v for k, v in parsed.query if k == "schema"]
    if named:
        parsed = parsed.without(["schema"])
        if schema is not None and named[-1] != schema:
            raise StateConfigError(f"schema {schema!r} and the URL's ?schema={named[-1]} disagree; give one")
        schema = named[-1]
    if schema is not None:
        try:
            check_schema(schema)
        except ValueError as exc:
            raise StateConfigError(f"schema must be {exc}, got {schema!r}") from None
        if dialect(parsed) != "postgres":
            raise StateConfigError(f"schema {schema!r}: only a Postgres store has schemas, not {parsed.masked!r}")
    return parsed, schema


def _wrap(exc: BaseException, url: StoreURL, doing: str) -> StateBackendError:
    backend = dialect(url)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    hint = ""
    if backend == "sqlite" and ("unable to open" in reason or "readonly" in reason):
        hint = "; check that the folder of the database file exists and is writable by this process"
    elif backend == "postgres" and "does not exist" in reason and "database" in reason:
        hint = "; create that database first (CREATE DATABASE ...), motia-state only creates its table"
    elif backend == "postgres" and isinstance(exc, (OSError, TimeoutError)):
        hint = "; check that the Postgres server is running and reachable, and the URL's host/port"
    message = url.redact(f"{doing} failed: {type(exc).__name__}: {reason}{hint}")
    return StateBackendError(message, backend=backend, url=url.masked)


@contextlib.asynccontextmanager
async def _engine(url: StoreURL, connect_timeout: float) -> AsyncIterator[AsyncEngine]:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    if dialect(url) == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            make_sqlite_folder(url, path)
    target, args = engine_args(url, connect_timeout)
    engine = create_async_engine(target, poolclass=NullPool, **args)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _guard(url: StoreURL, doing: str, work: Callable[[], Any]) -> Any:
    """Run ``work()`` (a coroutine factory) turning driver errors into StateBackendError."""
    try:
        return await work()
    except StateError:
        raise
    except (OSError, TimeoutError) as exc:
        raise _wrap(exc, url, doing) from exc
    except Exception as exc:
        from alembic.util import CommandError
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(exc, CommandError):
            raise StateConfigError(f"{doing}: {exc}") from None
        if isinstance(exc, SQLAlchemyError) or type(exc).__module__.split(".")[0] in ("asyncpg", "sqlite3"):
            raise _wrap(exc, url, doing) from exc
        raise


# --- reading the version -------------------------------------------------------------------------------


def _read_version(connection: Connection, schema: str | None = None) -> str | None:
    """The stored revision, or None when the version table is missing or empty."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table(VERSION_TABLE, schema=schema):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {qualified(VERSION_TABLE, schema)}")).scalars().all()
    if len(rows) > 1:
        raise StateConfigError(f"{VERSION_TABLE} holds several revisions {rows}; expected one")
    return str(rows[0]) if rows else None


def _read_version_fast(connection: Connection, schema: str | None = None) -> str | None:
    """One query when the table exists (every connect after the first migration)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        rows = connection.execute(text(f"SELECT version_num FROM {qualified(VERSION_TABLE, schema)}")).scalars().all()
    except DBAPIError:
        connection.rollback()  # most likely no version table yet; ask properly
        return _read_version(connection, schema)
    if len(rows) == 1:
        return str(rows[0])
    return _read_version(connection, schema)


async def _version(conn: AsyncConnection, schema: str | None) -> str | None:
    return await conn.run_sync(_read_version_fast, schema)


# --- the public API ------------------------------------------------------------------------------------


def upgrade_connection(connection: Connection, revision: str = "head", schema: str | None = None) -> None:
    """Upgrade through an open synchronous SQLAlchemy connection (used by ``sqlite:///:memory:``)."""
    from alembic import command

    command.upgrade(_config(connection=connection, schema=schema), revision)


def _downgrade_connection(connection: Connection, revision: str, schema: str | None) -> None:
    from alembic import command

    command.downgrade(_config(connection=connection, schema=schema), revision)


async def _run(url: StoreURL, fn: Callable[[Connection], _T], *, connect_timeout: float = 10.0) -> _T:
    async with _engine(url, connect_timeout) as engine, engine.begin() as conn:
        return await conn.run_sync(fn)


async def upgrade(
    url: str | StoreURL, revision: str = "head", *, connect_timeout: float = 10.0, schema: str | None = None
) -> None:
    """Apply migrations up to ``revision`` (default: head), serialised against other processes."""
    parsed, schema = split_schema(url, schema)
    await _guard(
        parsed,
        "upgrade",
        lambda: _locked_upgrade(parsed, revision, connect_timeout, only_if_behind=False, schema=schema),
    )


async def downgrade(
    url: str | StoreURL, revision: str, *, connect_timeout: float = 10.0, schema: str | None = None
) -> None:
    """Revert migrations down to ``revision`` (``"base"`` drops the tables and every entry; not the schema)."""
    parsed, schema = split_schema(url, schema)
    await _guard(
        parsed,
        "downgrade",
        lambda: _run(parsed, lambda c: _downgrade_connection(c, revision, schema), connect_timeout=connect_timeout),
    )
    _log.info("%s: reverted the schema to revision %s", parsed.masked, revision)


async def current(url: str | StoreURL, *, connect_timeout: float = 10.0, schema: str | None = None) -> str | None:
    """The revision the database is at (None for an empty database)."""
    parsed, schema = split_schema(url, schema)
    result: str | None = await _guard(
        parsed,
        "reading the schema version",
        lambda: _run(parsed, lambda c: _read_version(c, schema), connect_timeout=connect_timeout),
    )
    return result


def _pending_from(version: str | None) -> list[str]:
    script = _script()
    if version is not None and version not in {rev.revision for rev in script.walk_revisions()}:
        raise SchemaOutOfDateError(
            f"the database is at revision {version!r}, which this motia-state does not know (it is newer); "
            "upgrade motia-state",
            command="pip install -U motia-state",
        )
    revisions = list(script.iterate_revisions("heads", version or "base"))
    return [rev.revision for rev in reversed(revisions) if rev.revision != version]


async def pending(url: str | StoreURL, *, connect_timeout: float = 10.0, schema: str | None = None) -> list[str]:
    """Revisions not yet applied, oldest first (empty when at head)."""
    return _pending_from(await current(url, connect_timeout=connect_timeout, schema=schema))


def offline_sql(url: str | StoreURL, revision: str = "head", *, schema: str | None = None) -> str:
    """The SQL an upgrade from an empty database to ``revision`` would run, for a DBA to review.

    Nothing connects to the database: only the URL's dialect matters.
    """
    from alembic import command
    from alembic.util import CommandError

    parsed, schema = split_schema(url, schema)
    buffer = io.StringIO()
    try:
        command.upgrade(_config(url=parsed, buffer=buffer, schema=schema), revision, sql=True)
    except CommandError as exc:
        raise StateConfigError(f"offline SQL: {exc}") from None
    return buffer.getvalue()


async def ensure_schema(
    url: str | StoreURL, mode: str = "auto", *, connect_timeout: float = 10.0, schema: str | None = None
) -> None:
    """What a SQL adapter runs at connect, per ``migrate:`` mode.

    - ``auto``: upgrade to head when behind; many processes may do this at once on one empty database.
    - ``check``: raise SchemaOutOfDateError naming the command to run when not at head.
    - ``off``: nothing (the schema is someone else's job).
    """
    if mode not in MIGRATE_MODES:
        raise StateConfigError(f"migrate: {mode!r} is not one of {', '.join(MIGRATE_MODES)}")
    if mode == "off":
        return
    parsed, schema = split_schema(url, schema)
    await _guard(parsed, "checking the schema", lambda: _ensure(parsed, mode, connect_timeout, schema))


def at_head(version: str | None) -> bool:
    """Whether a stored revision is this package's newest one (no Alembic import needed)."""
    return version == HEAD_REVISION


async def _ensure(url: StoreURL, mode: str, connect_timeout: float, schema: str | None) -> None:
    target = head()
    async with _engine(url, connect_timeout) as engine:
        async with engine.connect() as conn:
            version = await _version(conn, schema)
        if version == target:
            return
        todo = _pending_from(version)  # raises when the database is newer than this motia-state
        if mode == "check":
            where = url.masked if schema is None else f"{url.masked} (schema {quote_ident(schema)})"
            raise SchemaOutOfDateError(
                f"the motia_state schema at {where} is at revision {version or 'none (empty database)'}, "
                f"this motia-state needs {target} ({len(todo)} pending). Run `motia-state migrate` with this "
                "URL (or `alembic upgrade head` from the repo with MOTIA_STATE_URL set), or use migrate: auto",
            )
    await _locked_upgrade(url, "head", connect_timeout, only_if_behind=True, schema=schema)


async def _locked_upgrade(
    url: StoreURL, revision: str, connect_timeout: float, *, only_if_behind: bool, schema: str | None = None
) -> None:
    """Upgrade holding a cross-process lock; re-read the version under the lock (another may have won)."""

    def work(connection: Connection) -> None:
        before = _read_version(connection, schema)
        if only_if_behind and before == head():
            return
        upgrade_connection(connection, revision, schema)
        after = _read_version(connection, schema)
        if after != before:
            where = url.masked if schema is None else f"{url.masked} (schema {schema})"
            _log.info("%s: migrated the schema from revision %s to %s", where, before or "(empty)", after)

    if dialect(url) == "postgres":
        from sqlalchemy import text

        async with _engine(url, connect_timeout) as engine, engine.begin() as conn:
            # Transaction-scoped: released by the COMMIT that also publishes the new schema.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            await conn.run_sync(work)
        return

    path = sqlite_path(url)
    if path is None:
        raise StateConfigError(
            "sqlite:///:memory: lives in one connection; it is migrated by the SQLite adapter itself"
        )
    make_sqlite_folder(url, path)
    async with (
        _file_lock(path + ".migrate-lock", connect_timeout + 60.0),
        _engine(url, connect_timeout) as engine,
        engine.begin() as conn,
    ):
        await conn.run_sync(work)


@contextlib.asynccontextmanager
async def _file_lock(path: str, wait: float) -> AsyncIterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), polled without blocking the loop.

    SQLite's own write lock cannot be held across Alembic's statements, so a lock file next to the
    database serialises concurrent migrations instead.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise TimeoutError(f"another process holds the migration lock {path!r}")
            await asyncio.sleep(0.02)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
