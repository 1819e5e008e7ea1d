"""``motia-state worker`` (run a module's triggers) and ``motia-state triggers`` (their progress; retry)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
import time
from typing import Any

import click

from ..adapter import StateAdapter
from ..errors import StateError
from ..manager import StateManager
from ..triggers import TriggerStatus, TriggerStore
from .common import EXIT_NOT_FOUND, EXIT_USAGE, CLIFailure, Output, failure, output_options, run_on_store, target

__all__ = ["request_retry", "trigger_statuses", "triggers_command", "worker_command"]


def load_manager(spec: str) -> StateManager:
    """The StateManager named by ``MODULE[:ATTR]`` (ATTR may be dotted; without it, the module's only one)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise CLIFailure(f"worker needs MODULE[:ATTR], got {spec!r}", EXIT_USAGE)
    # Like `python -m`: modules next to where the command runs are importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CLIFailure(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from exc
    if attr:
        found: Any = module
        for part in attr.split("."):
            found = getattr(found, part, None)
        if not isinstance(found, StateManager):
            raise CLIFailure(f"{spec}: {attr!r} is not a StateManager (got {type(found).__name__})", EXIT_USAGE)
        return found
    managers = {name: value for name, value in vars(module).items() if isinstance(value, StateManager)}
    if len(managers) != 1:
        names = ", ".join(sorted(managers)) or "none"
        raise CLIFailure(
            f"{module_name} holds {len(managers)} StateManager objects ({names}): name one as {module_name}:NAME",
            EXIT_USAGE,
        )
    return next(iter(managers.values()))


@click.command("worker", short_help="Run the triggers registered in a module until SIGTERM/SIGINT.")
@click.argument("spec", metavar="MODULE[:ATTR]")
def worker_command(spec: str) -> None:
    """Import MODULE and run the triggers registered on its StateManager (ATTR, or the only one in it).

    Any number of workers may run the same module, on any hosts: they share the work. SIGTERM or Ctrl-C
    stops the worker cleanly: in-flight handlers get a grace period to finish, the changes of those that do
    not are handled again by another worker. The store is the module's own (--url and --config do not apply).

    \b
    Example:
      motia-state worker myapp.steps:state
    """
    state = load_manager(spec)
    names = ", ".join(t.name for t in state.triggers)
    if not names:
        raise CLIFailure(f"{spec}: no trigger is registered on that StateManager (@state.on_change)", EXIT_USAGE)

    async def work() -> None:
        loop = asyncio.get_running_loop()
        running = asyncio.ensure_future(state.run_triggers())
        closing: list[asyncio.Task[None]] = []

        def stop() -> None:
            # close() lets in-flight handlers finish, then run_triggers() returns.
            if not closing:
                closing.append(loop.create_task(state.close()))

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop)
        click.echo(f"motia-state worker {os.getpid()}: running {names}; stop with Ctrl-C or SIGTERM", err=True)
        try:
            await running
        finally:
            await state.close()

    try:
        asyncio.run(work())
    except StateError as exc:
        raise failure(exc) from exc
    click.echo(f"motia-state worker {os.getpid()}: stopped", err=True)


def _status_json(status: TriggerStatus, head: int, oldest_pending_at: float | None) -> dict[str, Any]:
    return {
        "name": status.name,
        "position": status.position,
        "start_revision": status.start_revision,
        "lag_changes": max(0, head - status.position),
        "lag_seconds": 0.0 if oldest_pending_at is None else round(max(0.0, time.time() - oldest_pending_at), 3),
        "handled": status.handled,
        "skipped": status.skipped,
        "workers": list(status.owners),
        "parked": [
            {
                "revision": p.change.revision,
                "event": p.change.event,
                "scope": p.change.scope,
                "key": p.change.key,
                "error": p.error,
                "attempts": p.attempts,
                "parked_at": p.parked_at.isoformat(),
                "retry_requested": p.retry,
            }
            for p in status.parked
        ],
    }


async def _trigger_store(state: StateManager) -> tuple[StateAdapter, TriggerStore]:
    """The connected adapter and its trigger store; exit 2 for a store that keeps no triggers."""
    adapter = await state._connected_adapter()
    factory = getattr(adapter, "trigger_store", None)
    if factory is None:
        raise CLIFailure(f"this store ({adapter.backend}) keeps no triggers", EXIT_USAGE)
    store: TriggerStore = factory()
    return adapter, store


async def trigger_statuses(state: StateManager) -> list[dict[str, Any]]:
    """Every trigger of the store with its position, lag (revisions and seconds), counts, workers, parked."""
    adapter, store = await _trigger_store(state)
    statuses = await store.status()
    head = await state.revision()
    out = []
    for status in statuses:
        nxt = await adapter.changes_after(None, None, status.position, 1, 0.0) if status.position < head else []
        out.append(_status_json(status, head, nxt[0].at.timestamp() if nxt else None))
    return out


async def request_retry(state: StateManager, name: str) -> int:
    """Ask the workers of trigger ``name`` to run its parked changes again; how many there are."""
    _, store = await _trigger_store(state)
    if name not in {s.name for s in await store.status()}:
        raise CLIFailure(f"no trigger named {name!r} in this store", EXIT_NOT_FOUND)
    return int(await store.request_retry(name))


@click.group("triggers", invoke_without_command=True, short_help="Each trigger's position, lag, parked changes.")
@output_options
@click.pass_context
def triggers_command(ctx: click.Context, jsonl: bool, compact: bool) -> None:
    """Print every trigger of the store: its position (the revision up to which every change is done), its
    lag (revisions behind the store, and seconds since the oldest change not yet done), how many changes it
    handled and skipped, its live workers, and its parked changes with their errors.

    \b
    Examples:
      motia-state triggers
      motia-state triggers retry confirm-booking
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = run_on_store(target(ctx).settings(), trigger_statuses)
    Output(jsonl, compact).rows(rows)


@triggers_command.command("retry", short_help="Run the parked changes of a trigger again.")
@click.argument("name")
@click.pass_context
def retry_command(ctx: click.Context, name: str) -> None:
    """Ask the workers running trigger NAME to run its parked changes again (within a second or so).

    Prints {"trigger": NAME, "retrying": N}. A change that fails again is parked again with its new error.
    """

    count = run_on_store(target(ctx).settings(), lambda state: request_retry(state, name))
    Output().value({"trigger": name, "retrying": count})
