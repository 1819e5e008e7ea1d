"""The ``motia-state`` command line; see :mod:`.app`."""

from .app import cli, main

__all__ = ["cli", "main"]
