"""config.yml / URL / environment -> an adapter (SPEC §1)."""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

from .errors import StateConfigError, mask_secrets, mask_url

if TYPE_CHECKING:
    from .adapter import StateAdapter

__all__ = ["DEFAULT_SQLITE_PATH", "ENV_URL", "Settings", "load_settings", "settings_from_url"]

M = TypeVar("M")

DEFAULT_SQLITE_PATH: Final = ".motia/motia.state.db"
DEFAULT_CONFIG: Final = "config.yml"
ENV_URL: Final = "MOTIA_STATE_URL"
ADAPTERS: Final = ("sqlite", "postgres", "redis", "memory")

_SCHEMES: Final = {
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgres",
    "postgresql+asyncpg": "postgres",
    "postgres": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "memory": "memory",
}


def _positive_number(value: object) -> float:
    if type(value) is str:
        value = float(value)
    if type(value) is bool or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError("a number > 0")
    return float(value)


def _positive_int(value: object) -> int:
    if type(value) is str and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or value < 1:
        raise ValueError("a whole number >= 1")
    return value


def _port(value: object) -> int:
    port = _positive_int(value)
    if port > 65535:
        raise ValueError("a port number 1-65535")
    return port


def _text(value: object) -> str:
    if type(value) in (int, float):
        return str(value)
    if type(value) is not str or not value:
        raise ValueError("a non-empty string")
    return value


def _migrate(value: object) -> str:
    if value is False:
        return "off"
    if value not in ("auto", "check", "off"):
        raise ValueError("one of auto, check, off")
    assert isinstance(value, str)
    return value


def _database(value: object) -> str:
    if type(value) is int:
        return str(value)
    return _text(value)


# Option name -> converter; the converter raises ValueError("what is allowed").
_OPTIONS: Final[dict[str, Callable[[object], object]]] = {
    "ttl": _positive_number,
    "migrate": _migrate,
    "pool_size": _positive_int,
    "connect_timeout": _positive_number,
    "command_timeout": _positive_number,
    "busy_timeout": _positive_number,
    "sslmode": _text,
    "key_prefix": lambda v: v if type(v) is str else _text(v),
}

# Which options each adapter takes (besides ttl, which the manager takes).
_ADAPTER_OPTIONS: Final[dict[str, frozenset[str]]] = {
    "memory": frozenset(),
    "sqlite": frozenset({"migrate", "busy_timeout", "connect_timeout"}),
    "postgres": frozenset({"migrate", "pool_size", "connect_timeout", "command_timeout", "sslmode"}),
    "redis": frozenset({"key_prefix", "pool_size", "connect_timeout"}),
}

# Keys of the config.yml block that describe where the store is (turned into a URL).
_LOCATION_KEYS: Final[dict[str, Callable[[object], object]]] = {
    "adapter": _text,
    "url": _text,
    "path": _text,
    "host": _text,
    "port": _port,
    "user": _text,
    "username": _text,
    "password": lambda v: v if type(v) is str else _text(v),
    "database": _database,
}

_ALLOWED_KEYS: Final = sorted({*_LOCATION_KEYS, *_OPTIONS})


@dataclass(frozen=True)
class Settings:
    """A resolved store location and its options."""

    kind: str
    url: str
    ttl: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Settings(kind={self.kind!r}, url={mask_url(self.url)!r}, ttl={self.ttl!r}, options={self.options!r})"

    def create_adapter(self) -> StateAdapter:
        """Instantiate the adapter (importing only its driver)."""
        if self.kind == "memory":
            from .adapters.memory import MemoryAdapter

            return MemoryAdapter()
        if self.kind == "redis":
            from .adapters.redis import RedisAdapter

            return RedisAdapter(self.url, **self.options)
        from .adapters.sql import SQLAdapter

        return SQLAdapter(self.url, **self.options)

    def build(self, manager_cls: Callable[..., M]) -> M:
        """A manager of ``manager_cls`` over a new adapter."""
        return manager_cls(self.create_adapter(), ttl=self.ttl)


def kind_of_url(url: object, source: str = "url") -> str:
    """The adapter kind a URL names, or StateConfigError."""
    if type(url) is not str or "://" not in url:
        shown = mask_url(url) if isinstance(url, str) else repr(url)
        raise StateConfigError(
            f"{source}: {shown!r} is not a store URL; use sqlite:///PATH, postgresql://…, redis://… or memory://"
        )
    scheme = url.split("://", 1)[0].lower()
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise StateConfigError(
            f"{source}: unknown URL scheme {scheme!r} in {mask_url(url)!r}; allowed: {', '.join(sorted(_SCHEMES))}"
        )
    return kind


def _convert(source: str, name: str, value: object, table: Mapping[str, Callable[[object], object]]) -> object:
    try:
        return table[name](value)
    except (ValueError, TypeError) as exc:
        shown = "***" if name.endswith("password") else repr(value)
        raise StateConfigError(f"{source}: {name} must be {exc}, got {shown}") from None


def _options(kind: str, raw: Mapping[str, object], source: str, *, strict: bool) -> tuple[float | None, dict[str, Any]]:
    ttl: float | None = None
    options: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _OPTIONS:
            raise StateConfigError(f"{source}: unknown option {name!r}; allowed: {', '.join(sorted(_OPTIONS))}")
        if value is None:
            continue
        converted = _convert(source, name, value, _OPTIONS)
        if name == "ttl":
            ttl = float(converted)  # type: ignore[arg-type]
        elif name in _ADAPTER_OPTIONS[kind]:
            options[name] = converted
        elif strict:
            raise StateConfigError(
                f"{source}: option {name!r} does not apply to the {kind} adapter;"
                f" it takes: {', '.join(sorted(_ADAPTER_OPTIONS[kind] | {'ttl'}))}"
            )
    return ttl, options


def settings_from_url(url: str, options: Mapping[str, object]) -> Settings:
    """Settings for ``StateManager.from_url``: the URL and keyword options only."""
    kind = kind_of_url(url)
    ttl, opts = _options(kind, options, "StateManager.from_url", strict=True)
    return Settings(kind, url, ttl, opts)


_VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: object, source: str, key: str) -> object:
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        found = os.environ.get(name)
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        raise StateConfigError(
            f"{source}: state.{key} uses ${{{name}}} but {name} is not set; set it or write ${{{name}:-default}}"
        )

    return _VAR.sub(sub, value)


def _read_block(path: Path) -> dict[str, object]:
    import yaml

    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StateConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StateConfigError(f"{source}: not valid YAML: {mask_secrets(str(exc))}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise StateConfigError(f"{source}: expected a mapping at the top level with a 'state:' block")
    block = doc.get("state")
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise StateConfigError(f"{source}: 'state' must be a mapping of settings, got {type(block).__name__}")
    out: dict[str, object] = {}
    for key, value in block.items():
        if key not in _LOCATION_KEYS and key not in _OPTIONS:
            raise StateConfigError(f"{source}: unknown key state.{key}; allowed: {', '.join(_ALLOWED_KEYS)}")
        out[str(key)] = _expand(value, source, str(key))
    return out


def _url_from_block(block: Mapping[str, object], source: str) -> tuple[str, str]:
    loc = {
        k: _convert(source, f"state.{k}", v, {f"state.{k}": _LOCATION_KEYS[k]})
        for k, v in block.items()
        if k in _LOCATION_KEYS and v is not None
    }
    adapter = loc.get("adapter")
    if adapter == "file":
        warnings.warn(
            f"{source}: state.adapter 'file' is deprecated; it now means sqlite (.motia/motia.state.db)."
            " Import the old file with: motia-state import .motia/motia.state.json",
            DeprecationWarning,
            stacklevel=4,
        )
        adapter = "sqlite"
    if adapter is not None and adapter not in ADAPTERS:
        raise StateConfigError(f"{source}: state.adapter {adapter!r} is unknown; allowed: {', '.join(ADAPTERS)}, file")
    if "url" in loc:
        url = str(loc["url"])
        kind = kind_of_url(url, f"{source}: state.url")
        if adapter is not None and adapter != kind:
            raise StateConfigError(f"{source}: state.adapter is {adapter!r} but state.url is a {kind} URL")
        return kind, url
    kind = str(adapter or "sqlite")
    if kind == "memory":
        return kind, "memory://"
    if kind == "sqlite":
        return kind, "sqlite:///" + str(loc.get("path", DEFAULT_SQLITE_PATH))
    user = loc.get("user", loc.get("username"))
    password = loc.get("password")
    auth = ""
    if user is not None or password is not None:
        auth = quote(str(user or ""), safe="")
        if password is not None:
            auth += ":" + quote(str(password), safe="")
        auth += "@"
    host = str(loc.get("host", "localhost"))
    if ":" in host:
        host = f"[{host}]"
    if kind == "postgres":
        port = loc.get("port", 5432)
        database = loc.get("database", "postgres")
        return kind, f"postgresql://{auth}{host}:{port}/{quote(str(database), safe='')}"
    port = loc.get("port", 6379)
    database = loc.get("database", 0)
    if not str(database).isdigit():
        raise StateConfigError(f"{source}: state.database for redis must be a db number, got {database!r}")
    return kind, f"redis://{auth}{host}:{port}/{database}"


def load_settings(path: str | Path | None, options: Mapping[str, object], *, url: str | None = None) -> Settings:
    """Resolve the store: explicit ``url`` > ``MOTIA_STATE_URL`` > config.yml > the SQLite default."""
    if path is not None:
        config_path = Path(path)
        if not config_path.is_file():
            raise StateConfigError(f"{config_path}: config file not found")
    else:
        config_path = Path(DEFAULT_CONFIG)
    block = _read_block(config_path) if config_path.is_file() else {}
    source = str(config_path)
    kind, resolved = _url_from_block(block, source)
    env_url = os.environ.get(ENV_URL)
    if url is not None:
        kind, resolved, source = kind_of_url(url), url, "url"
    elif env_url:
        kind, resolved = kind_of_url(env_url, ENV_URL), env_url
    raw = {k: v for k, v in block.items() if k in _OPTIONS}
    # Options for another adapter (e.g. key_prefix when MOTIA_STATE_URL points at Postgres) are ignored.
    ttl, opts = _options(kind, raw, source, strict=False)
    override_ttl, override = _options(kind, options, "options", strict=True)
    opts.update(override)
    if "ttl" in options:
        ttl = override_ttl
    return Settings(kind, resolved, ttl, opts)
