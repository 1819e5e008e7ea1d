"""Commands on one entry: get, set, delete, update, ttl."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..manager import StateManager
from . import reads
from .common import Output, output_options, parse_json, run_on_store, target

__all__ = ["delete_command", "get_command", "set_command", "ttl_command", "update_command"]


@click.command("get", short_help="Print one value as JSON (exit 1 when missing).")
@click.argument("scope")
@click.argument("key")
@output_options
@click.pass_context
def get_command(ctx: click.Context, scope: str, key: str, jsonl: bool, compact: bool) -> None:
    """Print the value at SCOPE KEY as JSON.

    A missing (or expired) entry prints nothing on stdout, a message on stderr, and exits 1; a stored
    null prints null and exits 0.

    \b
    Example:
      motia-state get trace-123 booking
    """
    reads.get(target(ctx).settings(), scope, key, Output(jsonl, compact))


def _json_argument(value: str) -> Any:
    text = sys.stdin.read() if value == "-" else value
    return parse_json(text, "the JSON value from stdin" if value == "-" else f"JSON argument {value!r}")


@click.command(
    "set",
    short_help="Store a JSON value (optionally with --ttl); print old and new.",
    # So that a negative number (-5, -Infinity) is taken as the JSON argument, not as an option.
    context_settings={"ignore_unknown_options": True},
)
@click.argument("scope")
@click.argument("key")
@click.argument("value", metavar="JSON")
@click.option("--ttl", type=float, default=None, metavar="SECONDS", help="Expire the entry after this many seconds.")
@click.pass_context
def set_command(ctx: click.Context, scope: str, key: str, value: str, ttl: float | None) -> None:
    """Store the JSON value at SCOPE KEY; print {"old_value": ..., "new_value": ...}.

    JSON is parsed strictly (a string needs its quotes; NaN and Infinity are refused). Use - to read the
    value from stdin. Without --ttl the store's default ttl (config.yml) applies, else no expiry.

    \b
    Examples:
      motia-state set trace-123 payment.status '"pending"'
      motia-state set trace-123 booking '{"seats": 2}' --ttl 3600
      cat booking.json | motia-state set trace-123 booking -
    """
    parsed = _json_argument(value)

    async def work(state: StateManager) -> dict[str, Any]:
        return dict(await state.set(scope, key, parsed, ttl=ttl))

    Output().value(run_on_store(target(ctx).settings(), work))


@click.command("update", short_help="Apply update operations atomically; print old and new.")
@click.argument("scope")
@click.argument("key")
@click.argument("ops", metavar="OPS_JSON")
@click.pass_context
def update_command(ctx: click.Context, scope: str, key: str, ops: str) -> None:
    """Apply the update operations OPS_JSON (a JSON list) to SCOPE KEY, all or nothing; print
    {"old_value": ..., "new_value": ...}. The entry keeps its expiry. Use - to read OPS_JSON from stdin.

    Operations: set, increment, decrement, append, remove, merge, e.g. {"type": "increment", "path": "seats",
    "by": 2}; a path is a field name or a list of field names.

    \b
    Examples:
      motia-state update trace-123 booking '[{"type": "set", "path": "status", "value": "confirmed"}]'
      motia-state update trace-123 booking '[{"type": "increment", "path": ["venue", "seats"], "by": 2}]'
    """
    parsed = _json_argument(ops)

    async def work(state: StateManager) -> dict[str, Any]:
        return dict(await state.update(scope, key, parsed))

    Output().value(run_on_store(target(ctx).settings(), work))


@click.command("delete", short_help="Remove one entry; print the value it had.")
@click.argument("scope")
@click.argument("key")
@click.pass_context
def delete_command(ctx: click.Context, scope: str, key: str) -> None:
    """Remove the entry at SCOPE KEY; print the value it had as JSON (null when there was none).

    \b
    Example:
      motia-state delete trace-123 booking.customer
    """

    async def work(state: StateManager) -> Any:
        return await state.delete(scope, key)

    Output().value(run_on_store(target(ctx).settings(), work))


@click.command("ttl", short_help="Print the seconds left before an entry expires (null: never).")
@click.argument("scope")
@click.argument("key")
@output_options
@click.pass_context
def ttl_command(ctx: click.Context, scope: str, key: str, jsonl: bool, compact: bool) -> None:
    """Print the seconds left before SCOPE KEY expires, or null when it never expires.

    A missing (or expired) entry prints nothing on stdout, a message on stderr, and exits 1.

    \b
    Example:
      motia-state ttl trace-123 hold
    """
    reads.ttl(target(ctx).settings(), scope, key, Output(jsonl, compact))
