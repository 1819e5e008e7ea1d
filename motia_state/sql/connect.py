"""From a store URL to a SQL connection: the SQLite file, the Postgres DSN and its settings.

Shared by the SQL adapters and the migrations, so that both open a database the same way and accept the
same query parameters (a parameter the driver cannot take is refused here, naming it).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from ..backends import resolve
from ..errors import StateBackendError, StateConfigError
from ..urls import StoreURL

__all__ = ["PostgresTarget", "dialect", "make_sqlite_folder", "postgres_target", "sqlalchemy_url", "sqlite_path"]


def dialect(url: StoreURL) -> str:
    """``"sqlite"`` or ``"postgres"``; StateConfigError for a URL of another backend."""
    backend, _ = resolve(url)
    if not backend.has_schema:
        raise StateConfigError(f"{url.masked!r} is not a SQL URL; use sqlite:///PATH or postgresql://…")
    return backend.name


# --- SQLite ---------------------------------------------------------------------------------------------


def sqlite_path(url: StoreURL) -> str | None:
    """The database file of a sqlite URL as the sqlite3 module wants it; None for ``:memory:``.

    ``sqlite:///rel/path`` is relative to the working directory, ``sqlite:////abs/path`` is absolute.
    """
    if url.hosts:
        raise StateConfigError(
            f"{url.masked!r}: a sqlite URL has no host; use sqlite:///relative/path or sqlite:////absolute/path"
        )
    if url.query:
        names = ", ".join(sorted({k for k, _ in url.query}))
        raise StateConfigError(
            f"{url.masked!r}: the sqlite backend takes no URL parameter {names!r} (only migrate, busy_timeout"
            " and connect_timeout, which config.yml or keyword options can also set)"
        )
    path = unquote(url.path[1:] if url.path.startswith("/") else url.path)
    return None if path in ("", ":memory:") else path


def make_sqlite_folder(url: StoreURL, path: str) -> None:
    """Create the folder of a SQLite database file (the default ``.motia/`` on first use)."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateBackendError(
            f"cannot create the folder {str(parent)!r} of the SQLite database ({exc.strerror}); create it or "
            "point the sqlite URL at a writable location",
            backend="sqlite",
            url=url.masked,
        ) from None


# --- Postgres -------------------------------------------------------------------------------------------

# Query parameters asyncpg reads from a DSN itself (libpq's names).
_DSN_PARAMS: Final = frozenset(
    {
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "passfile",
        "service",
        "host",
        "port",
        "user",
        "dbname",
        "database",
    }
)
# Sent as run-time settings at connect, as libpq does.
_SETTING_PARAMS: Final = frozenset({"application_name"})
# asyncpg's own connect arguments, as the driver understands them. statement_cache_size=0 also says "behind
# a transaction pooler" (PgBouncer): no prepared statement is kept, no session setting is sent.
_DRIVER_PARAMS: Final = frozenset({"statement_cache_size"})
SSLMODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class PostgresTarget:
    """What asyncpg needs to connect: the DSN, the server settings taken from ``?options=``, and the
    driver's own arguments (``?statement_cache_size=``)."""

    __slots__ = ("driver_options", "dsn", "server_settings")

    def __init__(self, dsn: str, server_settings: dict[str, str], driver_options: dict[str, Any] | None = None) -> None:
        self.dsn = dsn
        self.server_settings = server_settings
        self.driver_options: dict[str, Any] = driver_options or {}

    @property
    def pooled(self) -> bool:
        """Whether the URL says a transaction pooler is in between (``statement_cache_size=0``)."""
        return self.driver_options.get("statement_cache_size") == 0


def _options_settings(url: StoreURL, value: str) -> dict[str, str]:
    """libpq's ``options=-c name=value -c …`` as a dict of settings."""
    settings: dict[str, str] = {}
    try:
        words = shlex.split(value)
    except ValueError:
        words = ["?"]
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            word, i = words[i + 1], i + 1
        elif word.startswith(("-c", "--")):
            word = word[2:]
        else:
            raise StateConfigError(
                f"{url.masked!r}: options={value!r} cannot be read; write it as libpq does: options=-c name=value"
            )
        name, eq, setting = word.partition("=")
        if not eq or not name:
            raise StateConfigError(f"{url.masked!r}: options: {word!r} is not name=value")
        settings[name.replace("-", "_")] = setting
        i += 1
    return settings


def postgres_target(url: StoreURL, sslmode: str | None = None) -> PostgresTarget:
    """The asyncpg DSN of a Postgres URL (no ``+driver``), refusing parameters asyncpg cannot take."""
    if sslmode is not None and sslmode not in SSLMODES:
        raise StateConfigError(f"sslmode {sslmode!r} is not one of {', '.join(SSLMODES)}")
    url.host_list()  # an unreadable port is refused here, before any connection attempt
    settings: dict[str, str] = {}
    query: list[tuple[str, str]] = []
    driver: dict[str, Any] = {}
    for name, value in url.query:
        if name in _DSN_PARAMS:
            if name == "sslmode" and value not in SSLMODES:
                raise StateConfigError(f"{url.masked!r}: sslmode {value!r} is not one of {', '.join(SSLMODES)}")
            query.append((name, value))
        elif name in _SETTING_PARAMS:
            settings[name] = value
        elif name == "options":
            settings.update(_options_settings(url, value))
        elif name in _DRIVER_PARAMS:
            if not value.strip().isdigit():
                raise StateConfigError(f"{url.masked!r}: {name} must be a whole number >= 0, got {value!r}")
            driver[name] = int(value)
        else:
            allowed = sorted(
                {*_DSN_PARAMS, *_SETTING_PARAMS, *_DRIVER_PARAMS, "options", "connect_timeout", "command_timeout"}
            )
            raise StateConfigError(
                f"{url.masked!r}: the Postgres URL parameter {name!r} is not supported; allowed: {', '.join(allowed)}"
            )
    if sslmode is not None:
        query = [(k, v) for k, v in query if k != "sslmode"] + [("sslmode", sslmode)]
    return PostgresTarget(url.replace(scheme="postgresql", query=query).text(), settings, driver)


def sqlalchemy_url(url: StoreURL) -> str:
    """The SQLAlchemy URL with the async driver, for the dialect only (offline SQL, engines made here)."""
    if dialect(url) == "sqlite":
        from sqlalchemy.engine import URL

        return URL.create("sqlite+aiosqlite", database=sqlite_path(url)).render_as_string()
    return "postgresql+asyncpg://"


def engine_args(url: StoreURL, connect_timeout: float) -> tuple[str, dict[str, Any]]:
    """``create_async_engine`` arguments opening ``url`` as the adapter does, safe behind a transaction pooler.

    Migrations are rare, so they always run as behind PgBouncer: no session setting, asyncpg's statement
    cache off, and SQLAlchemy's prepared statements unnamed (asyncpg then parses each again with its Bind, in
    one message sequence; a named one would stay behind on whichever server connection the pooler lent, and
    could collide with the same name another process left there). Every SQLAlchemy statement runs in a
    transaction, which keeps it on one server connection.
    """
    if dialect(url) == "sqlite":
        return sqlalchemy_url(url), {"connect_args": {"timeout": connect_timeout}}
    target = postgres_target(url)

    async def connect() -> Any:
        import asyncpg  # type: ignore[import-untyped]

        return await asyncpg.connect(
            target.dsn, timeout=connect_timeout, server_settings=target.server_settings, statement_cache_size=0
        )

    dbapi: list[Any] = []

    def creator() -> Any:
        # What create_async_engine(async_creator=) does, plus the dialect's prepared-statement arguments.
        if not dbapi:
            from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

            dbapi.append(PGDialect_asyncpg.import_dbapi())  # type: ignore[no-untyped-call]
        return dbapi[0].connect(
            async_creator_fn=connect,
            prepared_statement_cache_size=0,
            prepared_statement_name_func=str,  # "": the unnamed statement
        )

    return "postgresql+asyncpg://", {"creator": creator}
