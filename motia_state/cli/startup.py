"""What a ``motia-state`` process does before the CLI's modules are imported, and before it exits.

A one-operation call (``get``, ``list``, ``set``…) is mostly interpreter start-up: imports, one round trip,
exit. SPEC §9 gives a reading call 0.15 s, so start-up skips what it does not need. Only a process of its
own does this (the console script, ``python -m motia_state.cli``), never a caller of ``main(argv)``.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["ONE_OPERATION", "begin", "command_of", "finish", "started"]

#: Commands that run one store operation and no code of the user's: they may start without opentelemetry.
ONE_OPERATION: Final = frozenset(
    {"list", "get", "set", "update", "delete", "ttl", "keys", "items", "clear", "groups", "cleanup"}
)
# The group's options that take a value (``--url URL``); see app.cli.
_VALUED: Final = ("--url", "--config")

_paused = False


def command_of(args: Sequence[str]) -> str | None:
    """The command that ``args`` (without the program name) runs, or None when they name none plainly."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _VALUED:
            i += 2
        elif arg.startswith(tuple(f"{option}=" for option in _VALUED)):
            i += 1
        elif arg.startswith("-"):
            return None  # --help, --version, or a mistake: click answers those
        else:
            return arg
    return None


def _telemetry_possible() -> bool:
    # A provider exists only if code set one (and so imported the API before us: opentelemetry-instrument, a
    # sitecustomize) or the environment names one (OTEL_PYTHON_TRACER_PROVIDER / _METER_PROVIDER, which the
    # API's getters load). Without a provider the API records nothing.
    return (
        "opentelemetry" in sys.modules
        or "motia_state.telemetry" in sys.modules
        or any(name.startswith("OTEL_PYTHON_") for name in os.environ)
    )


def begin(args: Sequence[str]) -> None:
    """At process start, with the process's arguments (without the program name)."""
    global _paused
    # Start-up allocates long-lived objects (modules, classes, functions): the collections it would trigger
    # find nothing to free and cost ~15 ms over the imports. started() resumes collecting.
    if gc.isenabled():
        gc.disable()
        _paused = True
    if command_of(args) in ONE_OPERATION and not _telemetry_possible():
        # Nothing in this process can collect telemetry, and importing the API costs ~15 ms: run as if it were
        # not installed (telemetry.API is False; the mode tests/telemetry/test_without_api.py covers).
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]


def started() -> None:
    """Start-up is over (the command and its backend are imported): keep what it built out of every later
    collection, and collect as usual from now on. Idempotent; nothing when begin() did not pause."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def finish() -> None:
    """Just before the process exits: the interpreter's last collections would walk every object still
    alive (~25 ms for a CLI call); they are all about to go, and none holds a finalizer that matters then
    (the store is closed, output is flushed by the interpreter)."""
    gc.freeze()
