"""``motia-state watch``: follow the store's changes (SPEC §10), one JSON object per line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import click

from ..manager import StateManager
from .common import EXIT_USAGE, CLIFailure, Output, output_options, run_on_store, target

__all__ = ["watch_command"]


@click.command("watch", short_help="Follow changes: one JSON object per change per line, until interrupted.")
@click.argument("scope", required=False)
@click.option("--key", default=None, metavar="KEY", help="Only this key of SCOPE.")
@click.option(
    "--since",
    type=click.IntRange(min=0),
    default=None,
    metavar="REVISION",
    help="First every retained change after this revision, then the live ones.",
)
@output_options
@click.pass_context
def watch_command(
    ctx: click.Context, scope: str | None, key: str | None, since: int | None, jsonl: bool, compact: bool
) -> None:
    """Print each change of the store (of SCOPE, of --key in it) as it commits, until Ctrl-C or SIGTERM.

    Each line is one JSON object: revision, event (created, updated, deleted, expired), scope, key,
    old_value, new_value, at (ISO 8601). Lines are flushed one by one, so the output can be piped. To miss
    nothing, note the last revision printed and start again with --since.

    \b
    Examples:
      motia-state watch
      motia-state watch trace-123 --key booking
      motia-state watch --since 1200 | jq .new_value
    """
    if key is not None and scope is None:
        raise CLIFailure("--key follows one key of one scope: give the SCOPE as well", EXIT_USAGE)

    async def work(state: StateManager) -> None:
        loop = asyncio.get_running_loop()
        async with state.watch(scope, key=key, since=since) as changes:
            # Interrupting ends the stream: the loop below finishes and the store is closed cleanly.
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, changes.end)
            async for change in changes:
                sys.stdout.write(Output.dumps(change.to_json(), compact=True) + "\n")
                sys.stdout.flush()

    run_on_store(target(ctx).settings(), work)
