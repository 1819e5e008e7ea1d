"""What every command shares: opening the store, JSON in and out, and failures as exit codes.

Exit codes (SPEC §9): 0 ok, 1 not found (``get``, ``ttl``) or another failure, 2 bad usage or bad input
(invalid JSON, a bad filter, a value the store refuses, a bad URL or config), 3 the backend is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

from ..config import Settings, load_settings
from ..errors import SchemaOutOfDateError, StateBackendError, StateConfigError, StateError, mask_secrets
from ..manager import StateManager
from .startup import started

if TYPE_CHECKING:  # click is not imported by a call that fast.py runs
    import click

__all__ = [
    "EXIT_BACKEND",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "CLIFailure",
    "Output",
    "Target",
    "echo",
    "exit_code_of",
    "output_options",
    "parse_json",
    "prepare_process",
    "run_on_store",
    "target",
]

T = TypeVar("T")

PROG: Final = "motia-state"
EXIT_NOT_FOUND: Final = 1
EXIT_USAGE: Final = 2
EXIT_BACKEND: Final = 3


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


def target(ctx: click.Context) -> Target:
    """The group's Target."""
    found = ctx.find_object(Target)
    assert found is not None  # the group always sets it
    return found


def exit_code_of(exc: StateError) -> int:
    """The exit code for a store error: 3 unreachable, 2 bad input or config, 1 otherwise."""
    if isinstance(exc, StateBackendError):
        return EXIT_BACKEND
    if isinstance(exc, ValueError | StateConfigError):  # StateKeyError, StateValueError, UpdateOpError
        return EXIT_USAGE
    return 1


def describe(exc: StateError, url: str | None = None) -> str:
    """The error as one safe line (the password never shown)."""
    text = str(exc)
    if isinstance(exc, SchemaOutOfDateError) and exc.command not in text:
        text += f"; run: {exc.command}"
    return mask_secrets(text, url)


def failure(exc: StateError, url: str | None = None, prefix: str = "") -> CLIFailure:
    """A StateError as the CLIFailure to exit with."""
    return CLIFailure(prefix + describe(exc, url), exit_code_of(exc))


async def _with_store(settings: Settings, work: Callable[[StateManager], Awaitable[T]]) -> T:
    state = settings.build(StateManager)
    started()  # the backend is imported: the rest is the command's own work
    try:
        result = await work(state)
    except BaseException:
        # The original failure matters more than one from closing a broken connection.
        with contextlib.suppress(Exception):
            await state.close()
        raise
    await state.close()
    return result


def run_on_store(settings: Settings, work: Callable[[StateManager], Awaitable[T]]) -> T:
    """Run ``work`` on a store built from ``settings``, closing it afterwards."""
    try:
        return asyncio.run(_with_store(settings, work))
    except StateError as exc:
        raise failure(exc, settings.url) from exc


def parse_json(text: str, what: str) -> Any:
    """Parse a JSON argument strictly (NaN and Infinity are not JSON); exit 2 when it is not JSON."""

    def reject(name: str) -> Any:
        raise CLIFailure(f"{what}: {name} is not valid JSON (JSON numbers are finite)", EXIT_USAGE)

    def finite(number: str) -> float:
        value = float(number)
        if math.isinf(value):
            raise CLIFailure(
                f"{what}: the number {number} is too large for a float (JSON numbers are finite)", EXIT_USAGE
            )
        return value

    try:
        return json.loads(text, parse_constant=reject, parse_float=finite)
    except json.JSONDecodeError as exc:
        hint = " (a JSON string needs quotes: '\"pending\"')" if text and text[0] not in '{["-0123456789tfn' else ""
        raise CLIFailure(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}{hint}", EXIT_USAGE) from None
    except RecursionError:
        raise CLIFailure(f"{what} is nested too deeply", EXIT_USAGE) from None


def echo(text: str, *, nl: bool = True) -> None:
    """Print ``text`` to stdout as ``click.echo`` does; without importing click when a call runs without it."""
    loaded = sys.modules.get("click")
    if loaded is not None:
        loaded.echo(text, nl=nl)
        return
    # What click.echo does here (fast.py runs only on POSIX): write, flush. It would also strip ANSI codes when
    # stdout is not a terminal, but this prints JSON, whose every control character is escaped (no ESC).
    out = sys.stdout
    if out is None:  # no stdout at all: click prints nothing either
        return
    out.write(text + "\n" if nl else text)
    out.flush()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    import click  # rare: not worth importing at every start

    click.echo(f"{PROG}: warning: {mask_secrets(str(message))}", err=True)


def _utf8_stdout() -> None:
    # Values are printed as UTF-8 JSON whatever the locale says (a C locale would fail on 'é').
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.encoding.lower().replace("-", "") != "utf8":
        sys.stdout.reconfigure(encoding="utf-8")


def prepare_process() -> None:
    """Before any command runs: UTF-8 output, and warnings as one ``motia-state: warning:`` line."""
    _utf8_stdout()
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"motia_state(\.|$)")
    warnings.showwarning = _show_warning


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class Output:
    """How a reading command prints: indented JSON (default), one line (``--compact``), or one value per
    line (``--jsonl``, for ``jq`` and pipes)."""

    jsonl: bool = False
    compact: bool = False

    @staticmethod
    def dumps(value: Any, *, compact: bool = False) -> str:
        """JSON text of ``value`` (UTF-8, datetimes in ISO 8601)."""
        if compact:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default)
        return json.dumps(value, ensure_ascii=False, indent=2, allow_nan=False, default=_default)

    def value(self, value: Any) -> None:
        """Print one JSON value."""
        echo(self.dumps(value, compact=self.compact or self.jsonl))

    def rows(self, rows: Iterable[Any]) -> None:
        """Print a sequence: one compact value per line with ``--jsonl``, else one JSON array."""
        if self.jsonl:
            for row in rows:
                echo(self.dumps(row, compact=True))
        else:
            self.value(list(rows))


def output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--jsonl`` and ``--compact`` (the command builds ``Output(jsonl, compact)`` from them)."""
    import click

    fn = click.option("--compact", is_flag=True, help="Print JSON on one line.")(fn)
    fn = click.option("--jsonl", is_flag=True, help="Print one JSON value per line (for jq and pipes).")(fn)
    return fn
