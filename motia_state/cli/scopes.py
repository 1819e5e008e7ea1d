"""Commands on scopes and the whole store: list, keys, items, groups, clear, cleanup."""

from __future__ import annotations

import re
from typing import Any, Final

import click

from ..manager import StateManager
from . import reads
from .common import EXIT_USAGE, CLIFailure, Output, output_options, parse_json, run_on_store, target

__all__ = [
    "cleanup_command",
    "clear_command",
    "groups_command",
    "items_command",
    "keys_command",
    "list_command",
    "filter_path",
    "filter_value",
    "parse_filter",
]


@click.command("list", short_help="Print the store, or one scope, as JSON {scope: {key: value}}.")
@click.argument("scope", required=False)
@output_options
@click.pass_context
def list_command(ctx: click.Context, scope: str | None, jsonl: bool, compact: bool) -> None:
    """Print the whole store, or one SCOPE, as JSON {scope: {key: value}}.

    Expired entries are not shown. With SCOPE, an empty scope prints {"SCOPE": {}}. With --jsonl, one
    {"scope", "key", "value"} object per entry.

    \b
    Examples:
      motia-state list
      motia-state list trace-123 --jsonl | jq .value
    """
    reads.list_store(target(ctx).settings(), scope, Output(jsonl, compact))


@click.command("keys", short_help="Print the keys of a scope (sorted).")
@click.argument("scope")
@output_options
@click.pass_context
def keys_command(ctx: click.Context, scope: str, jsonl: bool, compact: bool) -> None:
    """Print the live keys of SCOPE as a JSON list, sorted by code point (--jsonl: one per line).

    \b
    Example:
      motia-state keys trace-123
    """
    reads.keys(target(ctx).settings(), scope, Output(jsonl, compact))


_FILTER: Final = re.compile(r"\s*(?P<path>\[[^\]]*\]|\S+)\s+(?P<op>\S+)(?:\s+(?P<value>.*\S))?\s*$", re.S)
_BARE_WORD: Final = re.compile(r"[^\s\"\[\]{},:0-9\-][^\s\"\[\]{},:]*")


def parse_filter(text: str) -> dict[str, Any]:
    """``'PATH OP VALUE'`` as a filter dict: PATH a field name or a JSON list of names, VALUE JSON (a bare
    word is a string); exit 2 when it cannot be read."""
    m = _FILTER.match(text)
    if m is None:
        raise CLIFailure(f"--filter {text!r}: write it as 'PATH OP VALUE', e.g. 'status eq \"confirmed\"'", EXIT_USAGE)
    raw_path, op, raw_value = m["path"], m["op"], m["value"]
    out: dict[str, Any] = {"path": filter_path(raw_path, f"--filter {text!r}"), "op": op}
    if raw_value is not None:
        out["value"] = filter_value(raw_value, f"--filter {text!r}")
    return out


def filter_path(text: str, what: str) -> Any:
    """A filter's PATH as written: a JSON list of field names when it starts with ``[``, else one field name."""
    return parse_json(text, f"{what}: the path") if text.startswith("[") else text


def filter_value(text: str, what: str) -> Any:
    """A filter's VALUE as written: JSON, or a bare word meaning that string (``confirmed``)."""
    is_word = _BARE_WORD.fullmatch(text) and text not in ("true", "false", "null")
    return text if is_word else parse_json(text, f"{what}: the value")


def _item(item: Any) -> dict[str, Any]:
    return {"scope": item.scope, "key": item.key, "value": item.value, "expires_at": item.expires_at}


@click.command("items", short_help="Print entries passing filters, with their expiry.")
@click.argument("scope", required=False)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="'PATH OP VALUE'",
    help="Keep entries whose value passes this filter (repeat to AND them). OP: eq neq gt gte lt lte contains"
    " notContains startsWith endsWith isNull isNotNull.",
)
@click.option("--limit", type=click.IntRange(min=0), default=None, metavar="N", help="At most N entries.")
@output_options
@click.pass_context
def items_command(
    ctx: click.Context, scope: str | None, filters: tuple[str, ...], limit: int | None, jsonl: bool, compact: bool
) -> None:
    """Print the entries of SCOPE (or of every scope) whose value passes every --filter, ordered by scope
    and key, as a JSON list of {"scope", "key", "value", "expires_at"} (expires_at in ISO 8601 or null).

    PATH is a field name ("a.b" is one field) or a JSON list of names for a nested field; VALUE is JSON,
    and a bare word is a string. isNull and isNotNull take no VALUE.

    \b
    Examples:
      motia-state items orders --filter 'status eq confirmed' --filter 'total gte 100'
      motia-state items --filter '["venue", "city"] startsWith "Par"' --limit 10 --jsonl
    """
    parsed = [parse_filter(f) for f in filters]

    async def work(state: StateManager) -> list[dict[str, Any]]:
        return [_item(i) for i in await state.items(scope, filters=parsed, limit=limit)]

    Output(jsonl, compact).rows(run_on_store(target(ctx).settings(), work))


@click.command("groups", short_help="Print the scopes, one per line.")
@output_options
@click.pass_context
def groups_command(ctx: click.Context, jsonl: bool, compact: bool) -> None:
    """Print every scope holding at least one live entry, one per line, sorted.

    --jsonl prints each as a JSON string (safe for scopes holding newlines); --compact one JSON list.

    \b
    Example:
      motia-state groups | wc -l
    """

    async def work(state: StateManager) -> list[str]:
        return await state.list_groups()

    scopes = run_on_store(target(ctx).settings(), work)
    if jsonl or compact:
        Output(jsonl, compact).rows(scopes)
        return
    for scope in scopes:
        click.echo(scope)


@click.command("clear", short_help="Remove every entry of a scope; print the count.")
@click.argument("scope")
@click.pass_context
def clear_command(ctx: click.Context, scope: str) -> None:
    """Remove every entry of exactly SCOPE; print how many were removed.

    \b
    Example:
      motia-state clear trace-123
    """

    async def work(state: StateManager) -> int:
        return await state.clear(scope)

    click.echo(run_on_store(target(ctx).settings(), work))


@click.command("cleanup", short_help="Delete expired entries; print the count.")
@click.pass_context
def cleanup_command(ctx: click.Context) -> None:
    """Delete expired entries (they are already invisible) and print how many were removed.

    Safe to run from cron on many hosts at once.

    \b
    Example:
      motia-state cleanup
    """

    async def work(state: StateManager) -> int:
        return await state.cleanup()

    click.echo(run_on_store(target(ctx).settings(), work))
