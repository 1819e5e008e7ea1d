"""The store typed exactly as the Motia Python SDK's state protocol, ``motia.types.InternalStateManager``.

:class:`StateManager` already behaves like that protocol, but mypy refuses it where the SDK's type is
wanted: its ``clear`` returns the number of entries removed, the protocol's returns None. :class:`MotiaState`
wraps a manager with the protocol's signatures, word for word, and delegates every call.

Giving a step this store: in motia 1.0.2rc1 (the last release whose ``FlowContext`` has ``state``) the
runtime builds a new context for every invocation with ``state`` set to the SDK's module-level
``motia.state.stateManager``, which forwards each call to the iii engine; the SDK has no hook to choose
another. ``FlowContext`` is a pydantic model that allows assignment, so a handler can set ``ctx.state``
itself, and :func:`with_state` does that before the handler runs::

    from motia import queue, step
    from motia_state.motia import from_url, with_state

    store = from_url("sqlite:///.motia/motia.state.db")

    @with_state(store)
    async def handler(data, ctx):
        await ctx.state.set(ctx.trace_id, "booking", data)

    booking_step = step({"name": "book", "triggers": [queue("book")]}, handler)

This module never imports ``motia`` (an optional dependency); docs/motia.md has the details.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from .manager import StateManager

__all__ = ["MotiaState", "from_config", "from_url", "with_state"]

_In = TypeVar("_In")
_Ctx = TypeVar("_Ctx")
_Out = TypeVar("_Out")


class MotiaState:
    """A :class:`StateManager` seen through Motia's ``InternalStateManager`` protocol.

    ``set`` and ``update`` return the manager's :class:`~motia_state.SetResult` at run time; they are
    typed ``Any`` because the protocol says so. TTLs, filters and batches stay on :attr:`manager`.
    """

    __slots__ = ("_manager",)

    def __init__(self, manager: StateManager) -> None:
        if not isinstance(manager, StateManager):
            raise TypeError(f"MotiaState needs a StateManager, got {type(manager).__name__}")
        self._manager = manager

    @property
    def manager(self) -> StateManager:
        """The store behind this view, with its whole API."""
        return self._manager

    def __repr__(self) -> str:
        return f"MotiaState({self._manager!r})"

    # The seven methods below copy the protocol's parameter names and types exactly (motia 1.0.2rc1,
    # motia/types.py): a structural check compares them, so a wider type here would be harmless but a
    # different name or return type would not.

    async def get(self, scope: str, key: str) -> Any | None:
        """The value at ``scope``/``key``, or None."""
        return await self._manager.get(scope, key)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        """Store ``value`` (with the manager's default TTL); return ``{old_value, new_value}``."""
        return await self._manager.set(scope, key, value)

    async def update(self, scope: str, key: str, ops: builtins.list[dict[str, Any]]) -> Any:
        """Apply Motia update operations atomically; return ``{old_value, new_value}``."""
        return await self._manager.update(scope, key, ops)

    async def delete(self, scope: str, key: str) -> Any | None:
        """Remove the entry; return its old value or None."""
        return await self._manager.delete(scope, key)

    async def list(self, scope: str) -> builtins.list[Any]:
        """The live values of ``scope``, ordered by key."""
        return await self._manager.list(scope)

    async def clear(self, scope: str) -> None:
        """Remove every entry of ``scope`` (the count the manager returns is dropped, as the protocol says)."""
        await self._manager.clear(scope)

    async def list_groups(self) -> builtins.list[str]:
        """Every scope holding at least one live entry, sorted."""
        return await self._manager.list_groups()

    async def close(self) -> None:
        """Release the manager's connections (a later call reconnects)."""
        await self._manager.close()


def from_url(url: str, **options: Any) -> MotiaState:
    """:meth:`StateManager.from_url` wrapped in a :class:`MotiaState`."""
    return MotiaState(StateManager.from_url(url, **options))


def from_config(path: str | Path | None = None, **options: Any) -> MotiaState:
    """:meth:`StateManager.from_config` wrapped in a :class:`MotiaState`."""
    return MotiaState(StateManager.from_config(path, **options))


def with_state(
    state: MotiaState | StateManager,
) -> Callable[[Callable[[_In, _Ctx], Awaitable[_Out]]], Callable[[_In, _Ctx], Awaitable[_Out]]]:
    """Decorate a Motia step handler ``(input, ctx)`` so that ``ctx.state`` is ``state`` while it runs.

    The context is built anew for every call, so the assignment is made on every call. A
    :class:`StateManager` is wrapped in a :class:`MotiaState` first.
    """
    view = state if isinstance(state, MotiaState) else MotiaState(state)

    def decorate(handler: Callable[[_In, _Ctx], Awaitable[_Out]]) -> Callable[[_In, _Ctx], Awaitable[_Out]]:
        @functools.wraps(handler)
        async def run(data: _In, ctx: _Ctx) -> _Out:
            # ctx is the SDK's FlowContext, which this module cannot name without importing motia.
            context: Any = ctx
            context.state = view
            return await handler(data, ctx)

        return run

    return decorate
