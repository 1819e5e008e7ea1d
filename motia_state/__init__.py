"""motia-state: scoped JSON state for Motia-style workflows on SQLite, Postgres, Redis or memory."""

from . import ops
from .adapter import SetResult, StateAdapter, StateItem
from .changes import Change, ChangeStream
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
