"""Entry point for the SQL backends: picks SQLite or Postgres by URL scheme, plus shared URL helpers.

The concrete adapters are imported lazily so that a SQLite user never loads asyncpg and vice versa.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..adapter import StateAdapter
from ..errors import StateBackendError, StateConfigError, mask_url

__all__ = [
    "SQLAdapter",
    "backend_of_url",
    "make_sqlite_folder",
    "sqlalchemy_async_url",
    "sqlalchemy_sync_url",
    "sqlite_file_path",
]

_SQLITE_SCHEMES: Final = frozenset({"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"})
_POSTGRES_SCHEMES: Final = frozenset(
    {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"}
)


def _scheme(url: str) -> str:
    if "://" not in url:
        raise StateConfigError(f"{mask_url(url)!r} is not a SQL URL; use sqlite:///PATH or postgresql://…")
    return url.split("://", 1)[0].lower()


def backend_of_url(url: str) -> str:
    """``"sqlite"`` or ``"postgres"`` for a SQL URL; StateConfigError for anything else."""
    scheme = _scheme(url)
    if scheme in _SQLITE_SCHEMES:
        return "sqlite"
    if scheme in _POSTGRES_SCHEMES:
        return "postgres"
    raise StateConfigError(
        f"{mask_url(url)!r} is not a SQL URL (scheme {scheme!r}); use sqlite:///PATH or postgresql://…"
    )


def _rest(url: str) -> str:
    return url.split("://", 1)[1]


def sqlalchemy_async_url(url: str) -> str:
    """The SQLAlchemy URL with the async driver: ``sqlite+aiosqlite://…`` or ``postgresql+asyncpg://…``."""
    backend = backend_of_url(url)
    if backend == "sqlite":
        return "sqlite+aiosqlite://" + _rest(url)
    return _asyncpg_ssl("postgresql+asyncpg://" + _rest(url))


def _asyncpg_ssl(url: str) -> str:
    # SQLAlchemy hands query parameters to asyncpg.connect(), which takes the TLS mode as ``ssl=``;
    # ``sslmode`` (libpq's name, what users write) is understood only inside a DSN.
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "sslmode" for k, _ in query):
        return url
    query = [("ssl", v) if k == "sslmode" else (k, v) for k, v in query if k != "ssl"]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def sqlalchemy_sync_url(url: str) -> str:
    """The SQLAlchemy URL with a synchronous driver (used for offline SQL generation only)."""
    backend = backend_of_url(url)
    if backend == "sqlite":
        return "sqlite://" + _rest(url)
    return "postgresql://" + _rest(url)


def sqlite_file_path(url: str) -> str | None:
    """The database file path of a sqlite URL, as the sqlite3 module wants it; None for ``:memory:``.

    ``sqlite:///rel/path`` is relative to the working directory, ``sqlite:////abs/path`` is absolute.
    A query string (``?mode=...``) is ignored.
    """
    if backend_of_url(url) != "sqlite":
        raise StateConfigError(f"{mask_url(url)!r} is not a sqlite URL")
    rest = _rest(url)
    if urlsplit(url).netloc:
        raise StateConfigError(
            f"{mask_url(url)!r}: a sqlite URL has no host; use sqlite:///relative/path or sqlite:////absolute/path"
        )
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return path


def make_sqlite_folder(url: str, path: str) -> None:
    """Create the folder of a SQLite database file (the default ``.motia/`` on first use)."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateBackendError(
            f"cannot create the folder {str(parent)!r} of the SQLite database ({exc.strerror}); create it or "
            "point the sqlite URL at a writable location",
            backend="sqlite",
            url=url,
        ) from None


def SQLAdapter(url: str, **options: Any) -> StateAdapter:  # a factory named like the class it stands for
    """Build the SQL adapter for ``url``: SQLiteAdapter for ``sqlite…``, PostgresAdapter for ``postgres…``."""
    if backend_of_url(url) == "sqlite":
        from .sqlite import SQLiteAdapter

        return SQLiteAdapter(url, **options)
    from .postgres import PostgresAdapter

    return PostgresAdapter(url, **options)
