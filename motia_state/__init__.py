"""motia-state: scoped JSON state for Motia-style workflows on SQLite, Postgres, Redis or memory."""

from . import ops
from .adapter import SetResult, StateAdapter, StateItem
from .errors import (
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
