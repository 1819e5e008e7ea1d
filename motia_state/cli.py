"""The ``motia-state`` command line (SPEC §9): inspect, repair, migrate, export/import and copy a store.

It opens the store the way ``StateManager.from_config`` does (``--url`` > ``MOTIA_STATE_URL`` >
``config.yml`` > the SQLite default). Results go to stdout as JSON; an expected failure prints one line
``motia-state: error: ...`` on stderr and exits non-zero, without a traceback and without passwords.

Exit codes: 0 success, 1 failure (including ``get`` of a missing entry and ``migrate --check`` on an
out-of-date schema), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .config import Settings, load_settings, settings_from_url
from .errors import SchemaOutOfDateError, StateError, mask_secrets, mask_url
from .manager import StateManager

if TYPE_CHECKING:
    from .transfer import TransferStats

__all__ = ["cli", "main"]

T = TypeVar("T")

PROG = "motia-state"
DEBUG_ENV = "MOTIA_STATE_DEBUG"


class CLIFailure(Exception):
    """An expected failure: printed as one line on stderr, then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    """Where the store is: the group's ``--config`` and ``--url`` options."""

    config: str | None
    url: str | None

    def settings(self, **options: Any) -> Settings:
        """Resolve like ``StateManager.from_config``, with ``options`` overriding config.yml."""
        return load_settings(self.config, options, url=self.url)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, allow_nan=False)


def _parse_json(text: str, what: str) -> Any:
    """Parse a JSON argument strictly (NaN and Infinity are not JSON)."""

    def reject(name: str) -> Any:
        raise CLIFailure(f"{what}: {name} is not valid JSON (JSON numbers are finite)")

    def finite(number: str) -> float:
        value = float(number)
        if math.isinf(value):
            raise CLIFailure(f"{what}: the number {number} is too large for a float (JSON numbers are finite)")
        return value

    try:
        return json.loads(text, parse_constant=reject, parse_float=finite)
    except json.JSONDecodeError as exc:
        hint = " (a JSON string needs quotes: '\"pending\"')" if text and text[0] not in '{["-0123456789tfn' else ""
        raise CLIFailure(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}{hint}") from None
    except RecursionError:
        raise CLIFailure(f"{what} is nested too deeply") from None


async def _with_store(settings: Settings, work: Callable[[StateManager], Awaitable[T]]) -> T:
    state = settings.build(StateManager)
    try:
        result = await work(state)
    except BaseException:
        # The original failure matters more than one from closing a broken connection.
        with contextlib.suppress(Exception):
            await state.close()
        raise
    await state.close()
    return result


def _run(settings: Settings, work: Callable[[StateManager], Awaitable[T]]) -> T:
    """Run ``work`` on a store built from ``settings``, closing it afterwards."""
    try:
        return asyncio.run(_with_store(settings, work))
    except StateError as exc:
        raise CLIFailure(_describe(exc, settings.url)) from exc


def _describe(exc: StateError, url: str | None = None) -> str:
    text = str(exc)
    if isinstance(exc, SchemaOutOfDateError) and exc.command not in text:
        text += f"; run: {exc.command}"
    return mask_secrets(text, url)


def _target(ctx: click.Context) -> Target:
    target = ctx.find_object(Target)
    assert target is not None  # the group always sets it
    return target


def _echo_json(value: Any) -> None:
    click.echo(_dumps(value))


# --- the group -----------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="config.yml to read (default: ./config.yml when it exists).",
)
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="Store URL; overrides MOTIA_STATE_URL and config.yml (sqlite:///PATH, postgresql://…, redis://…, memory://).",
)
@click.version_option(package_name="motia-state", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, config: str | None, url: str | None) -> None:
    """Inspect and manage motia-state stores (SQLite, Postgres, Redis).

    The store is chosen like StateManager.from_config: --url, else MOTIA_STATE_URL, else the state: block
    of config.yml, else SQLite at .motia/motia.state.db. Results are JSON on stdout; errors are one line on
    stderr with a non-zero exit code.

    \b
    Examples:
      motia-state demo
      motia-state list
      motia-state --url postgresql://app@db:5432/app get trace-123 booking
      motia-state copy --from sqlite:///.motia/motia.state.db --to postgresql://app@db:5432/app
    """
    ctx.obj = Target(config, url)


# --- one-entry commands --------------------------------------------------------------------------


@cli.command("list", short_help="Print the store, or one scope, as JSON {scope: {key: value}}.")
@click.argument("scope", required=False)
@click.pass_context
def list_command(ctx: click.Context, scope: str | None) -> None:
    """Print the whole store, or one SCOPE, as JSON {scope: {key: value}}.

    Expired entries are not shown. With SCOPE, an empty scope prints {"SCOPE": {}}.

    \b
    Examples:
      motia-state list
      motia-state list trace-123
    """

    async def work(state: StateManager) -> None:
        scopes = [scope] if scope is not None else await state.list_groups()
        # One scope at a time, so a big store is never held in memory whole.
        written = 0
        for name in scopes:
            items = await state.items(name)
            if not items and scope is None:
                continue  # expired since list_groups
            body = _dumps({item.key: item.value for item in items}).replace("\n", "\n  ")
            click.echo(
                ("{\n  " if not written else ",\n  ") + json.dumps(name, ensure_ascii=False) + ": " + body, nl=False
            )
            written += 1
        click.echo("\n}" if written else "{}")

    _run(_target(ctx).settings(), work)


@cli.command("get", short_help="Print one value as JSON (exit 1 when missing).")
@click.argument("scope")
@click.argument("key")
@click.pass_context
def get_command(ctx: click.Context, scope: str, key: str) -> None:
    """Print the value at SCOPE KEY as JSON.

    A missing (or expired) entry prints nothing on stdout, a message on stderr, and exits 1; a stored
    null prints null and exits 0.

    \b
    Example:
      motia-state get trace-123 booking
    """

    async def work(state: StateManager) -> dict[str, Any]:
        return await state.get_many(scope, [key])

    found = _run(_target(ctx).settings(), work)
    if key not in found:
        raise CLIFailure(f"no entry for scope {scope!r} key {key!r}")
    _echo_json(found[key])


@cli.command(
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
    text = sys.stdin.read() if value == "-" else value
    parsed = _parse_json(text, "the JSON value from stdin" if value == "-" else f"JSON argument {value!r}")

    async def work(state: StateManager) -> dict[str, Any]:
        result = await state.set(scope, key, parsed, ttl=ttl)
        return {"old_value": result.old_value, "new_value": result.new_value}

    _echo_json(_run(_target(ctx).settings(), work))


@cli.command("delete", short_help="Remove one entry; print the value it had.")
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

    _echo_json(_run(_target(ctx).settings(), work))


@cli.command("clear", short_help="Remove every entry of a scope; print the count.")
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

    click.echo(_run(_target(ctx).settings(), work))


@cli.command("groups", short_help="Print the scopes, one per line.")
@click.pass_context
def groups_command(ctx: click.Context) -> None:
    """Print every scope holding at least one live entry, one per line, sorted.

    \b
    Example:
      motia-state groups | wc -l
    """

    async def work(state: StateManager) -> list[str]:
        return await state.list_groups()

    for scope in _run(_target(ctx).settings(), work):
        click.echo(scope)


@cli.command("cleanup", short_help="Delete expired entries; print the count.")
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

    click.echo(_run(_target(ctx).settings(), work))


# --- schema --------------------------------------------------------------------------------------


@cli.command("migrate", short_help="Upgrade the SQL schema; --check reports, --sql prints SQL.")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
@click.option("--check", is_flag=True, help="Only report: print pending revisions and exit 1 when out of date.")
@click.option("--sql", "sql", is_flag=True, help="Print the SQL of the upgrade instead of running it (for a DBA).")
@click.pass_context
def migrate_command(ctx: click.Context, revision: str, check: bool, sql: bool) -> None:
    """Bring the SQL schema (SQLite or Postgres) up to date with Alembic.

    Redis and memory stores have no schema: there is nothing to do.

    \b
    Examples:
      motia-state migrate
      motia-state migrate --check
      motia-state --url postgresql://app@db:5432/app migrate --sql > upgrade.sql
    """
    if check and sql:
        raise click.UsageError("--check and --sql cannot be combined", ctx)
    settings = _target(ctx).settings()
    shown = mask_url(settings.url)
    if settings.kind not in ("sqlite", "postgres"):
        if sql:
            raise CLIFailure(f"the {settings.kind} store at {shown} has no SQL schema; --sql needs sqlite or postgres")
        click.echo(f"{PROG}: the {settings.kind} store at {shown} has no schema to migrate", err=True)
        return

    from . import migrate as migrations

    try:
        if sql:
            click.echo(migrations.offline_sql(settings.url, revision), nl=False)
            return
        if check:
            todo = asyncio.run(migrations.pending(settings.url))
            for rev in todo:
                click.echo(rev)
            if todo:
                raise CLIFailure(
                    f"the schema at {shown} is out of date: {len(todo)} pending migration(s); run: {PROG} migrate"
                )
            click.echo(f"{PROG}: the schema at {shown} is up to date", err=True)
            return

        async def upgrade() -> object:
            await migrations.upgrade(settings.url, revision)
            return await migrations.current(settings.url)

        current = asyncio.run(upgrade())
    except StateError as exc:
        raise CLIFailure(_describe(exc, settings.url)) from exc
    _echo_json({"url": shown, "revision": current})


# --- moving state --------------------------------------------------------------------------------


@cli.command("export", short_help="Dump the store (or a scope) as portable JSON with expiries.")
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
    from .transfer import export_state

    settings = _target(ctx).settings()
    if output == "-":
        _run(settings, lambda state: export_state(state, sys.stdout, scope=scope))
        return
    path = Path(output)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            stats = _run(settings, lambda state: export_state(state, handle, scope=scope))
        partial.replace(path)
    except OSError as exc:
        raise CLIFailure(f"cannot write {output}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    _echo_json({"output": output, **stats.as_dict()})


@cli.command("import", short_help="Load an export or the File adapter's motia.state.json.")
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
    from .transfer import import_file

    text: str | None = None
    if file == "-":
        text = sys.stdin.read()
    # No default ttl: entries that never expired must not start expiring on import.
    settings = _target(ctx).settings(ttl=None)
    stats = _run(settings, lambda state: import_file(state, file, batch_size=batch_size, text=text))
    _echo_json({"format": stats.format, **stats.as_dict()})


def _store_settings(url: str, option: str) -> Settings:
    try:
        return settings_from_url(url, {})
    except StateError as exc:
        raise CLIFailure(f"{option}: {_describe(exc, url)}") from exc


async def _connect(state: StateManager, option: str, url: str) -> None:
    try:
        await state.connect()
    except StateError as exc:
        raise CLIFailure(f"{option}: {_describe(exc, url)}") from exc


async def _copy_with_progress(source: StateManager, dest: StateManager, batch_size: int) -> TransferStats:
    from .transfer import copy_state

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


@cli.command("copy", short_help="Copy a store into another (e.g. SQLite to Postgres) with TTLs.")
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
    from .transfer import copy_state

    src = _store_settings(source, "--from") if source is not None else _target(ctx).settings(ttl=None)
    dst = _store_settings(dest, "--to")
    if src.url == dst.url and src.kind != "memory":
        raise CLIFailure(f"--from and --to are the same store ({mask_url(dst.url)})")

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
        raise CLIFailure(mask_secrets(_describe(exc, src.url), dst.url)) from exc
    _echo_json({"from": mask_url(src.url), "to": mask_url(dst.url), **stats.as_dict()})


# --- demo ----------------------------------------------------------------------------------------


@cli.command("demo", short_help="Run the booking example on the configured store.")
@click.option("--scope", default=None, help="Scope (trace id) to use; default: a new trace-<uuid>.")
@click.pass_context
def demo_command(ctx: click.Context, scope: str | None) -> None:
    """Run the reference's booking flow on the configured store and print the resulting state.

    It stores a booking, the dot-named keys booking.customer, booking.venue and payment.status, confirms
    the booking with update operations, reads it back typed as dataclasses, and adds a seat hold that
    expires after 15 minutes. SQLite at .motia/motia.state.db unless configured otherwise.

    \b
    Examples:
      motia-state demo
      motia-state --url memory:// demo
    """
    from .demo import run_demo

    settings = _target(ctx).settings()
    _run(settings, lambda state: run_demo(state, scope=scope, echo=click.echo, store=mask_url(settings.url)))


# --- entry point ---------------------------------------------------------------------------------


def _fail(message: str, exit_code: int = 1) -> NoReturn:
    # One line, whatever the message holds.
    line = " ".join(mask_secrets(message).split())
    click.echo(f"{PROG}: error: {line}", err=True)
    sys.exit(exit_code)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    click.echo(f"{PROG}: warning: {mask_secrets(str(message))}", err=True)


def _utf8_stdout() -> None:
    # Values are printed as UTF-8 JSON whatever the locale says (a C locale would fail on 'é').
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.encoding.lower().replace("-", "") != "utf8":
        sys.stdout.reconfigure(encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run the CLI, turning expected failures into one line on stderr."""
    _utf8_stdout()
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"motia_state(\.|$)")
    warnings.showwarning = _show_warning
    debug = bool(os.environ.get(DEBUG_ENV))
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name=PROG, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        sys.exit(2)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else PROG
        _fail(f"{exc.format_message()} (see: {where} --help)", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except CLIFailure as exc:
        _fail(str(exc), exc.exit_code)
    except StateError as exc:
        _fail(_describe(exc))
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python from complaining at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 to see the traceback)")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
