"""motia-state: scoped JSON state for Motia-style workflows on SQLite, Postgres, Redis or memory."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ChangesCompactedError,
    SchemaOutOfDateError,
    StateBackendError,
    StateConfigError,
    StateError,
    StateKeyError,
    StateValueError,
    UpdateOpError,
)

if TYPE_CHECKING:
    from . import ops
    from .adapter import SetResult, StateAdapter, StateItem
    from .changes import Change, ChangeStream
    from .manager import StateManager

__all__ = [
    "Change",
    "ChangeStream",
    "ChangesCompactedError",
    "SchemaOutOfDateError",
    "SetResult",
    "StateAdapter",
    "StateBackendError",
    "StateConfigError",
    "StateError",
    "StateItem",
    "StateKeyError",
    "StateManager",
    "StateValueError",
    "UpdateOpError",
    "ops",
]

# Loaded on first use: `motia-state get` starts by importing this package, and must be able to decide what
# to load (SPEC §9: a reading call under 0.15 s) before the manager, the change feed and asyncio are imported.
_LAZY: dict[str, str] = {
    "ops": "",
    "SetResult": ".adapter",
    "StateAdapter": ".adapter",
    "StateItem": ".adapter",
    "Change": ".changes",
    "ChangeStream": ".changes",
    "StateManager": ".manager",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: Any = importlib.import_module(where or f".{name}", __name__)
    if where:
        value = getattr(value, name)
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
