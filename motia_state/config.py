"""config.yml / URL / environment -> :class:`Settings` -> an adapter (SPEC §1).

Where the store is: an explicit URL (``from_url``, ``--url``) > ``MOTIA_STATE_URL`` > the ``state:`` block
of config.yml > the SQLite default. A URL given explicitly or by the environment takes no option from a
config.yml it did not name: only a config file passed by path (``from_config(path)``, ``--config``) adds
its options to it. The backends and their options come from the registry (:mod:`motia_state.backends`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .backends import (
    ALL_OPTIONS,
    BACKENDS,
    DEFAULT_SQLITE_PATH,
    Backend,
    any_text,
    backend_named,
    positive_number,
    resolve,
)
from .backends import text as _text
from .changes import changes_option
from .errors import StateConfigError
from .urls import StoreURL

if TYPE_CHECKING:
    from .adapter import StateAdapter

__all__ = ["DEFAULT_SQLITE_PATH", "ENV_URL", "Settings", "load_settings", "settings_from_url"]

M = TypeVar("M")

DEFAULT_CONFIG: Final = "config.yml"
ENV_URL: Final = "MOTIA_STATE_URL"


def _port(value: object) -> int:
    if type(value) is str and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or not 0 < value < 65536:
        raise ValueError("a port number 1-65535")
    return value


def _database(value: object) -> str:
    return str(value) if type(value) is int else _text(value)


# Keys of the config.yml block that say where the store is (turned into a URL by the backend).
_LOCATION_KEYS: Final[dict[str, Callable[[object], object]]] = {
    "adapter": _text,
    "url": _text,
    "path": _text,
    "host": _text,
    "port": _port,
    "user": _text,
    "username": _text,
    "password": any_text,
    "database": _database,
}
#: Options of the StateManager itself, on every backend (the others go to the adapter).
_MANAGER_OPTIONS: Final = ("ttl", "telemetry_scopes")
_ALLOWED_KEYS: Final = sorted({*_LOCATION_KEYS, *_MANAGER_OPTIONS, *ALL_OPTIONS})
_ADAPTER_NAMES: Final = tuple(b.name for b in BACKENDS)


@dataclass(frozen=True)
class Settings:
    """A resolved store: its backend, URL (parsed once) and options."""

    backend: Backend
    store_url: StoreURL
    ttl: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The backend's name: sqlite, postgres, redis or memory."""
        return self.backend.name

    @property
    def url(self) -> str:
        """The URL as given. Never print it: :attr:`masked_url` is the form to show."""
        return self.store_url.raw

    @property
    def masked_url(self) -> str:
        """The URL with its password masked."""
        return self.store_url.masked

    def __repr__(self) -> str:
        return f"Settings(kind={self.kind!r}, url={self.masked_url!r}, ttl={self.ttl!r}, options={self.options!r})"

    def create_adapter(self) -> StateAdapter:
        """Instantiate the adapter (importing only its driver)."""
        return self.backend.create(self.store_url, {k: v for k, v in self.options.items() if k != "telemetry_scopes"})

    def build(self, manager_cls: Callable[..., M]) -> M:
        """A manager of ``manager_cls`` over a new adapter."""
        scopes = bool(self.options.get("telemetry_scopes", False))
        return manager_cls(self.create_adapter(), ttl=self.ttl, telemetry_scopes=scopes)


def _options(
    backend: Backend, raw: Mapping[str, object], source: str, *, strict: bool
) -> tuple[float | None, dict[str, Any]]:
    """``ttl`` and the backend's options from ``raw``; ``strict`` refuses options of other backends."""
    ttl: float | None = None
    options: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _MANAGER_OPTIONS and name not in ALL_OPTIONS:
            allowed = ", ".join(sorted({*_MANAGER_OPTIONS, *ALL_OPTIONS}))
            raise StateConfigError(f"{source}: unknown option {name!r}; allowed: {allowed}")
        if value is None:
            continue
        if name == "ttl":
            try:
                ttl = positive_number(value)
            except ValueError as exc:
                raise StateConfigError(f"{source}: ttl must be {exc} (seconds), got {value!r}") from None
            continue
        if name == "telemetry_scopes":
            try:
                options[name] = changes_option(value)
            except ValueError:
                raise StateConfigError(f"{source}: telemetry_scopes must be on or off, got {value!r}") from None
            continue
        option = backend.option(name)
        if option is not None:
            options[name] = option(value, source)
        elif strict:
            raise StateConfigError(
                f"{source}: option {name!r} does not apply to the {backend.name} adapter;"
                f" it takes: {', '.join(sorted(backend.option_names | set(_MANAGER_OPTIONS)))}"
            )
    return ttl, options


def _from_query(backend: Backend, url: StoreURL, source: str) -> tuple[StoreURL, dict[str, Any]]:
    """The backend's own options written in the URL's query (``?migrate=check``), moved out of it."""
    found = {k: v for k, v in url.query if k in backend.option_names}
    if not found:
        return url, {}
    _, options = _options(backend, found, f"{source} (query parameter)", strict=True)
    return url.without(found), options


def settings_from_url(url: str, options: Mapping[str, object], *, source: str = "url") -> Settings:
    """Settings from a URL and keyword options only (``StateManager.from_url``, ``--url``)."""
    backend, parsed = resolve(url, source)
    parsed, query_options = _from_query(backend, parsed, source)
    ttl, opts = _options(backend, options, "StateManager.from_url" if source == "url" else source, strict=True)
    return Settings(backend, parsed, ttl, {**query_options, **opts})


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


def _yaml_error(source: str, exc: Exception) -> StateConfigError:
    """Where the YAML breaks (file, line, column) and why, never the text of the line: it may hold a password."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None)
    reason = f" ({problem})" if isinstance(problem, str) and len(problem) < 80 and "'" not in problem else ""
    return StateConfigError(f"{source}: not valid YAML{where}{reason}; fix the file (the line is not shown here)")


def _read_block(path: Path) -> dict[str, object]:
    import yaml

    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StateConfigError(f"{source}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise StateConfigError(f"{source}: the config file is not UTF-8 text") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
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
        if key not in _LOCATION_KEYS and key not in _MANAGER_OPTIONS and key not in ALL_OPTIONS:
            raise StateConfigError(f"{source}: unknown key state.{key}; allowed: {', '.join(_ALLOWED_KEYS)}")
        out[str(key)] = _expand(value, source, str(key))
    return out


def _convert_location(block: Mapping[str, object], source: str) -> dict[str, Any]:
    loc: dict[str, Any] = {}
    for k, v in block.items():
        if k not in _LOCATION_KEYS or v is None:
            continue
        try:
            loc[k] = _LOCATION_KEYS[k](v)
        except (ValueError, TypeError) as exc:
            shown = "***" if k == "password" else repr(v)
            raise StateConfigError(f"{source}: state.{k} must be {exc}, got {shown}") from None
    if "username" in loc:
        loc.setdefault("user", loc.pop("username"))
    return loc


def _location(block: Mapping[str, object], source: str) -> tuple[Backend, StoreURL]:
    loc = _convert_location(block, source)
    adapter = loc.get("adapter")
    if adapter == "file":
        warnings.warn(
            f"{source}: state.adapter 'file' is deprecated; it now means sqlite (.motia/motia.state.db)."
            " Import the old file with: motia-state import .motia/motia.state.json",
            DeprecationWarning,
            stacklevel=4,
        )
        adapter = "sqlite"
    named = None if adapter is None else backend_named(str(adapter))
    if adapter is not None and named is None:
        allowed = ", ".join(_ADAPTER_NAMES)
        raise StateConfigError(f"{source}: state.adapter {adapter!r} is unknown; allowed: {allowed}, file")
    if "url" in loc:
        backend, url = resolve(str(loc["url"]), f"{source}: state.url")
        if named is not None and named is not backend:
            raise StateConfigError(f"{source}: state.adapter is {named.name!r} but state.url is a {backend.name} URL")
        return backend, url
    backend = named or BACKENDS[0]
    try:
        text = backend.url_from_fields(loc)
    except ValueError as exc:
        raise StateConfigError(f"{source}: {exc}") from None
    return resolve(text, source)


def load_settings(path: str | Path | None, options: Mapping[str, object], *, url: str | None = None) -> Settings:
    """Resolve the store: explicit ``url`` > ``MOTIA_STATE_URL`` > config.yml > the SQLite default.

    config.yml in the working directory is read only when no URL is given (explicitly or by the
    environment); a config file named by ``path`` is always read, and its options apply to any URL.
    """
    env_url = os.environ.get(ENV_URL) or None
    if path is not None:
        config_path: Path | None = Path(path)
        assert config_path is not None
        if not config_path.is_file():
            raise StateConfigError(f"{config_path}: config file not found")
    elif url is None and env_url is None:
        config_path = Path(DEFAULT_CONFIG)
    else:
        config_path = None
    block = _read_block(config_path) if config_path is not None and config_path.is_file() else {}
    source = str(config_path or DEFAULT_CONFIG)
    if url is not None:
        backend, parsed, source = *resolve(url, "url"), "url"
    elif env_url is not None:
        backend, parsed = resolve(env_url, ENV_URL)
        source = ENV_URL
    else:
        backend, parsed = _location(block, source)
    parsed, query_options = _from_query(backend, parsed, source)
    raw = {k: v for k, v in block.items() if k in _MANAGER_OPTIONS or k in ALL_OPTIONS}
    # Options for another backend (key_prefix when --url points at Postgres) are ignored.
    ttl, opts = _options(backend, raw, str(config_path or source), strict=False)
    override_ttl, override = _options(backend, options, "options", strict=True)
    if "ttl" in options:
        ttl = override_ttl
    return Settings(backend, parsed, ttl, {**opts, **query_options, **override})
