"""Helpers for driving the INSTALLED ``motia-state`` console script as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from tests.conftest import FACTORIES, MARKS
from tests.services import PG_URL, REDIS_URL


def _script() -> str:
    # The script next to this interpreter (the project's .venv), else whatever is on PATH.
    found = shutil.which("motia-state", path=str(Path(sys.executable).parent)) or shutil.which("motia-state")
    if found is None:
        pytest.fail("the motia-state console script is not installed; run: .venv/bin/pip install -e '.[dev]'")
    return found


SCRIPT = _script()


@dataclass
class Run:
    """The outcome of one invocation."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def ok(self) -> Run:
        assert self.code == 0, f"motia-state {' '.join(self.args)} exited {self.code}: {self.err}"
        return self

    def failed_cleanly(self, code: int = 1) -> str:
        """Assert a one-line error, no traceback, exit ``code``; return the line."""
        assert self.code == code, f"exit {self.code}, stdout={self.out!r}, stderr={self.err!r}"
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("motia-state: error: "), self.err
        assert "Traceback" not in self.err
        return lines[0]


def run_cli(*args: str, cwd: Path, input: str | None = None, env: dict[str, str] | None = None) -> Run:
    """Run ``motia-state ARGS`` in ``cwd`` with a clean environment (no MOTIA_STATE_URL unless given)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOTIA_STATE_")}
    base.update(env or {})
    done = subprocess.run(
        [SCRIPT, *args], cwd=cwd, input=input, capture_output=True, text=True, env=base, timeout=120, check=False
    )
    return Run(args, done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    """``cli(*args, input=..., env=...)`` runs the script in a fresh working directory."""

    def call(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
        return run_cli(*args, cwd=tmp_path, input=input, env=env)

    return call


@pytest.fixture
def acli(tmp_path: Path) -> Any:
    """The same as ``cli`` for async tests: the subprocess runs in a worker thread."""

    async def call(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Run:
        return await asyncio.to_thread(run_cli, *args, cwd=tmp_path, input=input, env=env)

    return call


PERSISTENT = [pytest.param(name, marks=MARKS.get(name, [])) for name in ("sqlite", "postgres", "redis")]


def url_of(backend: str, tmp_path: Path) -> str:
    """The URL the factories of tests/conftest.py use for ``backend``."""
    return {"sqlite": f"sqlite:///{tmp_path / 'state.db'}", "postgres": PG_URL, "redis": REDIS_URL}[backend]


@pytest.fixture(params=PERSISTENT)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, StateManager]]:
    """A fresh, empty persistent store and its URL, to seed and inspect what the CLI did."""
    backend = str(request.param)
    state = await FACTORIES[backend](tmp_path)
    await state.connect()  # creates the schema so the script sees an up-to-date store
    try:
        yield url_of(backend, tmp_path), state
    finally:
        await state.close()


def shape(value: Any) -> Any:
    """``value`` with every scalar tagged by its type, so 1 != 1.0 and 2**70 != float(2**70)."""
    if isinstance(value, dict):
        return {"dict": {k: shape(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"list": [shape(v) for v in value]}
    return (type(value).__name__, value)
