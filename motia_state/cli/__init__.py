"""The ``motia-state`` command line; see :mod:`.app`.

Importing this package imports nothing else: the console script's ``main`` first sets up the process
(:mod:`.startup`), then loads the commands.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from .app import cli

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run the CLI, turning expected failures into one line on stderr."""
    if argv is not None:  # called from Python: the caller's process is left as it is
        from .app import main as run_in_process

        run_in_process(argv)
    from . import startup

    args = sys.argv[1:]
    startup.begin(args)
    try:
        _fast(args)
        from .app import main as run

        run()
    finally:
        startup.finish()


def _fast(args: Sequence[str]) -> None:
    """Run a plain reading call without loading click (see :mod:`.fast`) and exit; return for any other."""
    from . import fast

    call = fast.parse(args)
    if call is None:
        return
    from .common import prepare_process

    prepare_process()
    try:
        fast.run(call)
    except BaseException as exc:  # reported exactly as when click had read the arguments
        from .app import guarded

        guarded(functools.partial(_reraise, exc))
    sys.exit(0)


def _reraise(exc: BaseException) -> NoReturn:
    raise exc


def __getattr__(name: str) -> Any:
    if name == "cli":
        from .app import cli as group

        return group
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
