"""The backend registry: every backend's URL schemes, options and schema, in one table.

Config, the CLI and ``StateManager.from_url`` read this table; nothing else names a backend. A backend's
module is imported only when a store of that kind is opened, so a SQLite user never loads asyncpg.

Adding a backend: write its adapter module (a :class:`~motia_state.StateAdapter` subclass whose
constructor, or a function, takes ``(url: StoreURL, **options)``), add one :class:`Backend` line to
:data:`BACKENDS`, and one factory to the test suite's ``FACTORIES`` so the contract suite runs on it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from ..errors import StateConfigError, mask_url
from ..urls import StoreURL, parse_url

if TYPE_CHECKING:
    from ..adapter import StateAdapter

__all__ = ["BACKENDS", "Backend", "Option", "backend_named", "resolve"]

# --- option value rules: each returns the converted value or raises ValueError("what is allowed") ------


def positive_number(value: object) -> float:
    """A finite number > 0 (a numeric string is accepted: URLs and environment variables are text)."""
    if type(value) is str:
        try:
            value = float(value)
        except ValueError:
            raise ValueError("a number > 0") from None
    if type(value) is bool or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError("a number > 0")
    return float(value)


def positive_int(value: object) -> int:
    """A whole number >= 1."""
    if type(value) is str and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or value < 1:
        raise ValueError("a whole number >= 1")
    return value


def text(value: object) -> str:
    """A non-empty string (a number is taken as its text)."""
    if type(value) in (int, float):
        return str(value)
    if type(value) is not str or not value:
        raise ValueError("a non-empty string")
    return value


def any_text(value: object) -> str:
    """A string, possibly empty."""
    return value if type(value) is str else text(value)


def migrate_mode(value: object) -> str:
    """auto | check | off (YAML's ``off`` is False)."""
    if value is False:
        return "off"
    if value not in ("auto", "check", "off"):
        raise ValueError("one of auto, check, off")
    assert isinstance(value, str)
    return value


@dataclass(frozen=True, slots=True)
class Option:
    """A backend option: its name in config.yml, keyword arguments and URL queries, and its rule."""

    name: str
    convert: Callable[[object], object]
    doc: str
    #: The value may hold a password (a URL): shown masked in messages.
    secret: bool = False

    def __call__(self, value: object, source: str) -> object:
        try:
            return self.convert(value)
        except (ValueError, TypeError) as exc:
            shown = repr(value)
            if self.secret:  # never the text itself: it may hold a password
                shown = repr(mask_url(value)) if isinstance(value, str) and "://" in value else "a value not shown"
            raise StateConfigError(f"{source}: {self.name} must be {exc}, got {shown}") from None


MIGRATE: Final = Option("migrate", migrate_mode, "auto | check | off: what connecting does to an old schema")
POOL_SIZE: Final = Option("pool_size", positive_int, "connections in the pool")
CONNECT_TIMEOUT: Final = Option("connect_timeout", positive_number, "seconds allowed to connect")
COMMAND_TIMEOUT: Final = Option("command_timeout", positive_number, "seconds one statement may take")
BUSY_TIMEOUT: Final = Option("busy_timeout", positive_number, "seconds to wait for another process's write lock")
SSLMODE: Final = Option("sslmode", text, "libpq TLS mode: disable, allow, prefer, require, verify-ca, verify-full")
KEY_PREFIX: Final = Option("key_prefix", any_text, "prefix of every Redis key")


def redis_layout(value: object) -> str:
    """tagged | motia."""
    if value not in ("tagged", "motia"):
        raise ValueError("tagged (the default, Cluster-ready) or motia (shared with a Motia app's Redis adapter)")
    assert isinstance(value, str)
    return value


def changes_mode(value: object) -> bool:
    """on | off (YAML booleans and the strings alike) -> True | False."""
    from ..changes import changes_option

    return changes_option(value)


CHANGES: Final = Option("changes", changes_mode, "on (default) | off: record every change for watch() and triggers")
CHANGES_RETENTION: Final = Option(
    "changes_retention", positive_number, "seconds a recorded change is kept at least (default 86400)"
)
LAYOUT: Final = Option("layout", redis_layout, "Redis key layout: tagged (default) or motia (Motia's own)")


def pg_schema(value: object) -> str:
    """A Postgres schema name (taken exactly as written)."""
    from ..sql import check_schema

    return check_schema(value)


def pg_listen_url(value: object) -> StoreURL:
    """A postgresql:// URL (kept parsed: its repr is masked)."""
    wanted = "a postgresql:// URL of a direct (session) connection to the same database"
    try:
        parsed = value if isinstance(value, StoreURL) else parse_url(text(value), "listen_url")
    except StateConfigError:
        raise ValueError(wanted) from None
    if parsed.scheme not in BACKENDS[1].schemes:
        raise ValueError(wanted)
    return parsed


SCHEMA: Final = Option("schema", pg_schema, "Postgres schema holding the tables (default: the search_path's)")
LISTEN_URL: Final = Option(
    "listen_url", pg_listen_url, "direct Postgres URL used only for LISTEN when url goes through a pooler", True
)


# --- building a URL from config.yml's host/port/... fields -----------------------------------------------


def _auth(fields: Mapping[str, Any]) -> str:
    user, password = fields.get("user"), fields.get("password")
    if user is None and password is None:
        return ""
    auth = quote(str(user or ""), safe="")
    if password is not None:
        auth += ":" + quote(str(password), safe="")
    return auth + "@"


def _host(fields: Mapping[str, Any]) -> str:
    host = str(fields.get("host", "localhost"))
    return f"[{host}]" if ":" in host else host


def _postgres_url(fields: Mapping[str, Any]) -> str:
    port = fields.get("port", 5432)
    database = quote(str(fields.get("database", "postgres")), safe="")
    return f"postgresql://{_auth(fields)}{_host(fields)}:{port}/{database}"


def _redis_url(fields: Mapping[str, Any]) -> str:
    database = fields.get("database", 0)
    if not str(database).isdigit():
        raise ValueError(f"state.database for redis must be a db number, got {database!r}")
    return f"redis://{_auth(fields)}{_host(fields)}:{fields.get('port', 6379)}/{database}"


def _sqlite_url(fields: Mapping[str, Any]) -> str:
    return "sqlite:///" + str(fields.get("path", DEFAULT_SQLITE_PATH))


DEFAULT_SQLITE_PATH: Final = ".motia/motia.state.db"


# --- the registry -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backend:
    """One backend: how its URLs look, which options it takes, where its adapter lives."""

    name: str
    schemes: tuple[str, ...]
    adapter: str  # "module:callable" (the adapter class or a function making one), imported on first use
    options: tuple[Option, ...]
    has_schema: bool
    #: config.yml fields (host, port, user, password, database, path) -> a URL of this backend.
    url_from_fields: Callable[[Mapping[str, Any]], str]
    example: str

    @property
    def option_names(self) -> frozenset[str]:
        """Names of the options this backend takes (``ttl`` is the manager's, for every backend)."""
        return frozenset(o.name for o in self.options)

    def option(self, name: str) -> Option | None:
        """The option called ``name``, or None."""
        return next((o for o in self.options if o.name == name), None)

    def factory(self) -> Callable[..., StateAdapter]:
        """Import the adapter's module (and so its driver) and return what makes an adapter."""
        module, _, name = self.adapter.partition(":")
        found: Callable[..., StateAdapter] = getattr(importlib.import_module(module), name)
        return found

    def create(self, url: StoreURL, options: Mapping[str, Any]) -> StateAdapter:
        """A new adapter for ``url`` with ``options`` (already converted)."""
        return self.factory()(url, **options)


BACKENDS: Final[tuple[Backend, ...]] = (
    Backend(
        "sqlite",
        ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"),
        "motia_state.backends.sqlite:SQLiteAdapter",
        (MIGRATE, BUSY_TIMEOUT, CONNECT_TIMEOUT, CHANGES, CHANGES_RETENTION),
        True,
        _sqlite_url,
        "sqlite:///.motia/motia.state.db",
    ),
    Backend(
        "postgres",
        ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2"),
        "motia_state.backends.postgres:PostgresAdapter",
        (MIGRATE, POOL_SIZE, CONNECT_TIMEOUT, COMMAND_TIMEOUT, SSLMODE, CHANGES, CHANGES_RETENTION, SCHEMA, LISTEN_URL),
        True,
        _postgres_url,
        "postgresql://user:password@host:5432/database",
    ),
    Backend(
        "redis",
        ("redis", "rediss", "redis+cluster", "rediss+cluster"),
        "motia_state.backends.redis:open_adapter",
        (KEY_PREFIX, LAYOUT, POOL_SIZE, CONNECT_TIMEOUT, CHANGES, CHANGES_RETENTION),
        False,
        _redis_url,
        "redis://:password@host:6379/0",
    ),
    Backend(
        "memory",
        ("memory",),
        "motia_state.backends.memory:MemoryAdapter",
        (CHANGES, CHANGES_RETENTION),
        False,
        lambda fields: "memory://",
        "memory://",
    ),
)

_BY_SCHEME: Final = {scheme: b for b in BACKENDS for scheme in b.schemes}
_BY_NAME: Final = {b.name: b for b in BACKENDS}
ALL_OPTIONS: Final = {o.name: o for b in BACKENDS for o in b.options}


def backend_named(name: str) -> Backend | None:
    """The backend called ``name`` (``sqlite``, ``postgres``, ``redis``, ``memory``), or None."""
    return _BY_NAME.get(name)


def resolve(url: str | StoreURL, source: str = "url") -> tuple[Backend, StoreURL]:
    """The backend a URL names, and the URL parsed; StateConfigError listing the schemes otherwise."""
    parsed = url if isinstance(url, StoreURL) else parse_url(url, source)
    backend = _BY_SCHEME.get(parsed.scheme)
    if backend is None:
        raise StateConfigError(
            f"{source}: unknown URL scheme {parsed.scheme!r} in {parsed.masked!r};"
            f" allowed: {', '.join(sorted(_BY_SCHEME))}"
        )
    return backend, parsed
