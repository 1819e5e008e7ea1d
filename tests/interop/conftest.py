"""Fixtures of the interop tests: Motia's Node packages (tests/interop/node.py)."""

from __future__ import annotations

import pytest

from tests.interop.node import PREPARED
from tests.interop.node import motia as motia


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for prepared in PREPARED:
        how = "reused" if prepared.install_seconds is None else f"npm install took {prepared.install_seconds:.1f} s"
        terminalreporter.write_line(f"Motia's Node packages: {how} ({prepared.root})")
