"""Moving state: export, import, copy."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..config import Settings, settings_from_url
from ..errors import StateError, mask_secrets
from ..manager import StateManager
from .common import EXIT_USAGE, CLIFailure, Output, describe, exit_code_of, failure, run_on_store, target

if TYPE_CHECKING:
    from ..transfer import TransferStats

__all__ = ["copy_command", "export_command", "import_command"]


@click.command("export", short_help="Dump the store (or a scope) as portable JSON with expiries.")
@click.option("--scope", default=None, help="Export only this scope.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="Write to this file instead of stdout.",
)
@click.pass_context
def export_command(ctx: click.Context, scope: str | None, output: str) -> None:
    """Dump the store (or one scope) as a portable JSON file, with expiries.

    Values round-trip exactly (big integers, floats, {} and []). Import it with `motia-state import`.
    With -o, the file is written whole or not at all, and a summary is printed.

    \b
    Examples:
      motia-state export > state.json
      motia-state export --scope trace-123 -o trace-123.json
    """
    from ..transfer import export_state

    settings = target(ctx).settings()
    if output == "-":
        # Spooled first, printed only once complete: a failure midway leaves nothing half-written on stdout
        # (`export > file` would otherwise keep a truncated document).
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            run_on_store(settings, lambda state: export_state(state, spool, scope=scope))
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout)
        return
    path = Path(output)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            stats = run_on_store(settings, lambda state: export_state(state, handle, scope=scope))
        partial.replace(path)
    except OSError as exc:
        raise CLIFailure(f"cannot write {output}: {exc.strerror}", EXIT_USAGE) from None
    finally:
        partial.unlink(missing_ok=True)
    Output().value({"output": output, **stats.as_dict()})


@click.command("import", short_help="Load an export or the File adapter's motia.state.json.")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Entries per write.")
@click.pass_context
def import_command(ctx: click.Context, file: str, batch_size: int) -> None:
    """Load a motia-state export, or the old File adapter's .motia/motia.state.json, into the store.

    The format is detected. Remaining TTLs are restored; entries already expired are skipped and counted.
    Importing the same file twice gives the same store. The whole file is checked before anything is
    written. Prints a summary as JSON.

    \b
    Examples:
      motia-state import state.json
      motia-state import .motia/motia.state.json
    """
    from ..transfer import import_file

    text: str | None = None
    if file == "-":
        text = sys.stdin.read()
    # No default ttl: entries that never expired must not start expiring on import.
    settings = target(ctx).settings(ttl=None)
    stats = run_on_store(settings, lambda state: import_file(state, file, batch_size=batch_size, text=text))
    Output().value({"format": stats.format, **stats.as_dict()})


def _store_settings(url: str, option: str) -> Settings:
    try:
        return settings_from_url(url, {})
    except StateError as exc:
        raise failure(exc, url, f"{option}: ") from exc


async def _connect(state: StateManager, option: str, url: str) -> None:
    try:
        await state.connect()
    except StateError as exc:
        raise failure(exc, url, f"{option}: ") from exc


async def _copy_with_progress(source: StateManager, dest: StateManager, batch_size: int) -> TransferStats:
    from ..transfer import copy_state

    total = len(await source.list_groups())
    copied = 0

    def show(_: object) -> str:
        return f"{copied} entries"

    with click.progressbar(length=total, label="copying scopes", file=sys.stderr, item_show_func=show) as bar:

        def advance(scope: str, count: int) -> None:
            nonlocal copied
            copied += count
            bar.update(1)

        return await copy_state(source, dest, batch_size=batch_size, on_scope=advance)


@click.command("copy", short_help="Copy a store into another (e.g. SQLite to Postgres) with TTLs.")
@click.option("--from", "source", default=None, metavar="URL", help="Store to read (default: the configured store).")
@click.option("--to", "dest", required=True, metavar="URL", help="Store to write into.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True, help="Entries per write.")
@click.pass_context
def copy_command(ctx: click.Context, source: str | None, dest: str, batch_size: int) -> None:
    """Copy every live entry from one store to another, keeping values and remaining TTLs.

    Streams scope by scope in batches, shows a progress bar when stderr is a terminal, and prints a
    summary as JSON. Entries already in the destination with the same scope and key are overwritten;
    others are kept. The source is not changed.

    \b
    Example:
      motia-state copy --from sqlite:///.motia/motia.state.db --to postgresql://app@db:5432/app
    """
    from ..transfer import copy_state

    src = _store_settings(source, "--from") if source is not None else target(ctx).settings(ttl=None)
    dst = _store_settings(dest, "--to")
    if src.url == dst.url and src.kind != "memory":
        raise CLIFailure(f"--from and --to are the same store ({dst.masked_url})", EXIT_USAGE)

    async def work() -> TransferStats:
        source_state, dest_state = src.build(StateManager), dst.build(StateManager)
        try:
            # Connect both first, so that a failure names the side it comes from.
            await _connect(source_state, "--from", src.url)
            await _connect(dest_state, "--to", dst.url)
            if not sys.stderr.isatty():
                return await copy_state(source_state, dest_state, batch_size=batch_size)
            return await _copy_with_progress(source_state, dest_state, batch_size)
        finally:
            for state in (source_state, dest_state):
                with contextlib.suppress(Exception):
                    await state.close()

    try:
        stats = asyncio.run(work())
    except StateError as exc:
        raise CLIFailure(mask_secrets(describe(exc, src.url), dst.url), exit_code_of(exc)) from exc
    Output().value({"from": src.masked_url, "to": dst.masked_url, **stats.as_dict()})
