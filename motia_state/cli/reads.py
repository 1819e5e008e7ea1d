"""The reading commands' work, without click: the click commands (``entries``, ``scopes``) and the fast path
(``fast``) both run these, so a call prints the same whichever way its arguments were read."""

from __future__ import annotations

import json
from typing import Any

from ..config import Settings
from ..manager import StateManager
from .common import EXIT_NOT_FOUND, CLIFailure, Output, echo, run_on_store

__all__ = ["get", "keys", "list_store", "ttl"]


def get(settings: Settings, scope: str, key: str, out: Output) -> None:
    """``get SCOPE KEY``: the value, or exit 1 when there is none."""

    async def work(state: StateManager) -> dict[str, Any]:
        return await state.get_many(scope, [key])

    found = run_on_store(settings, work)
    if key not in found:
        raise CLIFailure(f"no entry for scope {scope!r} key {key!r}", EXIT_NOT_FOUND)
    out.value(found[key])


def ttl(settings: Settings, scope: str, key: str, out: Output) -> None:
    """``ttl SCOPE KEY``: the seconds left (null: never expires), or exit 1 when there is no entry."""

    async def work(state: StateManager) -> tuple[bool, float | None]:
        if not await state.get_many(scope, [key]):
            return False, None
        return True, await state.ttl(scope, key)

    exists, left = run_on_store(settings, work)
    if not exists:
        raise CLIFailure(f"no entry for scope {scope!r} key {key!r}", EXIT_NOT_FOUND)
    out.value(None if left is None else round(left, 3))


def keys(settings: Settings, scope: str, out: Output) -> None:
    """``keys SCOPE``: the live keys, sorted."""

    async def work(state: StateManager) -> list[str]:
        return await state.keys(scope)

    out.rows(run_on_store(settings, work))


def list_store(settings: Settings, scope: str | None, out: Output) -> None:
    """``list [SCOPE]``: ``{scope: {key: value}}``, printed one scope at a time."""
    jsonl, compact = out.jsonl, out.compact

    async def work(state: StateManager) -> None:
        scopes = [scope] if scope is not None else await state.list_groups()
        # One scope at a time, so a big store is never held in memory whole.
        written = 0
        for name in scopes:
            items = await state.items(name)
            if not items and scope is None:
                continue  # expired since list_groups
            if jsonl:
                out.rows({"scope": i.scope, "key": i.key, "value": i.value} for i in items)
                continue
            body = Output.dumps({item.key: item.value for item in items}, compact=compact)
            opening = "{" if compact else "{\n  "
            between = "," if compact else ",\n  "
            if not compact:
                body = body.replace("\n", "\n  ")
            key = json.dumps(name, ensure_ascii=False)
            echo((opening if not written else between) + key + (":" if compact else ": ") + body, nl=False)
            written += 1
        if not jsonl:
            echo(("}" if compact else "\n}") if written else "{}")

    run_on_store(settings, work)
