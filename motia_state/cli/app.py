"""The ``motia-state`` command line (SPEC §9): inspect, repair, migrate, export/import and copy a store.

It opens the store the way ``StateManager.from_config`` does (``--url`` > ``MOTIA_STATE_URL`` >
``config.yml`` > the SQLite default). Results go to stdout as JSON; an expected failure prints one line
``motia-state: error: ...`` on stderr and exits non-zero (see :mod:`.common` for the codes), without a
traceback and without passwords. Each group of commands is a module here; this one puts them together.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from ..errors import StateError, mask_secrets
from .common import EXIT_USAGE, PROG, CLIFailure, Target, describe, exit_code_of, prepare_process
from .startup import ONE_OPERATION, started

__all__ = ["cli", "guarded", "main"]

DEBUG_ENV = "MOTIA_STATE_DEBUG"

# Command name -> "module:function" in this package: a command's module is imported only when it runs (a
# reading call then loads nothing it does not use). A new command = its function + one line here.
COMMANDS: dict[str, str] = {
    "list": "scopes:list_command",
    "get": "entries:get_command",
    "set": "entries:set_command",
    "update": "entries:update_command",
    "delete": "entries:delete_command",
    "ttl": "entries:ttl_command",
    "keys": "scopes:keys_command",
    "items": "scopes:items_command",
    "clear": "scopes:clear_command",
    "groups": "scopes:groups_command",
    "cleanup": "scopes:cleanup_command",
    "migrate": "schema:migrate_command",
    "export": "transfer:export_command",
    "import": "transfer:import_command",
    "copy": "transfer:copy_command",
    "demo": "demo:demo_command",
    "watch": "watch:watch_command",
    "worker": "triggers:worker_command",
    "triggers": "triggers:triggers_command",
    "ui": "ui:ui_command",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use (``COMMANDS``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, name = target.partition(":")
        command: click.Command = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        if cmd_name not in ONE_OPERATION:
            started()  # a one-operation command starts up until its store is built (common.run_on_store)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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


def _fail(message: str, exit_code: int = 1) -> NoReturn:
    # One line, whatever the message holds.
    line = " ".join(mask_secrets(message).split())
    click.echo(f"{PROG}: error: {line}", err=True)
    sys.exit(exit_code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run the CLI, turning expected failures into one line on stderr."""
    prepare_process()
    guarded(lambda: cli.main(args=list(argv) if argv is not None else None, prog_name=PROG, standalone_mode=False))


def guarded(call: Callable[[], Any]) -> NoReturn:
    """Run ``call`` (a command), turning expected failures into one line on stderr; exit with its code."""
    debug = bool(os.environ.get(DEBUG_ENV))
    try:
        code = call()
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else PROG
        _fail(f"{exc.format_message()} (see: {where} --help)", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except CLIFailure as exc:
        _fail(str(exc), exc.exit_code)
    except StateError as exc:
        _fail(describe(exc), exit_code_of(exc))
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
