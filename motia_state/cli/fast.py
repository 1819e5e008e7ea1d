"""The reading commands in their plain forms, run without click (importing it is ~10 ms of a ~0.1 s call).

``motia-state [--url URL] get SCOPE KEY [--jsonl] [--compact]``, and ``ttl``, ``keys``, ``list`` alike, are
recognised here and run through :mod:`.reads`, as the click commands run them. Anything else — another
command, ``--config``, ``--help``, an unknown or repeated option, a missing or extra argument, ``--`` — is
left to click (:func:`parse` answers None), so every message about usage stays click's; a failure of the call
itself is reported by :func:`.app.guarded`, as any command's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ..config import Settings
from . import reads
from .common import Output, Target

__all__ = ["Call", "parse", "run"]

# Command -> (fewest, most) arguments.
_ARITY: Final = {"get": (2, 2), "ttl": (2, 2), "keys": (1, 1), "list": (0, 1)}
_FLAGS: Final = ("--jsonl", "--compact")
# Set by a shell asking click for completions (click's `_<PROG>_COMPLETE`).
_COMPLETION: Final = "_MOTIA_STATE_COMPLETE"


@dataclass(frozen=True)
class Call:
    """A reading command, read from the arguments."""

    url: str | None
    command: str
    arguments: tuple[str, ...]
    jsonl: bool = False
    compact: bool = False


def parse(args: Sequence[str]) -> Call | None:
    """The call ``args`` (without the program name) make, when they are a plain reading call; else None."""
    if os.name != "posix" or _COMPLETION in os.environ:  # click's own console handling / completion
        return None
    url: str | None = None
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if url is not None:
            return None
        if arg == "--url" and i + 1 < len(args) and not args[i + 1].startswith("-"):
            url, i = args[i + 1], i + 2
        elif arg.startswith("--url="):
            url, i = arg.removeprefix("--url="), i + 1
        else:
            return None
    if i == len(args) or args[i] not in _ARITY:
        return None
    command = args[i]
    positional: list[str] = []
    flags: set[str] = set()
    for arg in args[i + 1 :]:
        if arg in _FLAGS:
            flags.add(arg)
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
    fewest, most = _ARITY[command]
    if not fewest <= len(positional) <= most:
        return None
    return Call(url, command, tuple(positional), "--jsonl" in flags, "--compact" in flags)


def run(call: Call) -> None:
    """Run ``call`` as its click command would (errors are raised, for :func:`.app.guarded` to report)."""
    settings = Target(None, call.url).settings()
    out = Output(call.jsonl, call.compact)
    a = call.arguments
    commands: dict[str, Callable[[Settings], None]] = {
        "get": lambda s: reads.get(s, a[0], a[1], out),
        "ttl": lambda s: reads.ttl(s, a[0], a[1], out),
        "keys": lambda s: reads.keys(s, a[0], out),
        "list": lambda s: reads.list_store(s, a[0] if a else None, out),
    }
    commands[call.command](settings)
