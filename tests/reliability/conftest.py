"""Fixtures of the reliability suite: private server instances the tests may stop and restart."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.servers import PrivatePostgres, PrivateRedis


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A temp dir directly under /tmp: pytest's tmp_path is private to root, Postgres runs as postgres."""
    path = Path(tempfile.mkdtemp(prefix="motia_state_e_"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private_postgres(private_dir: Path) -> Iterator[PrivatePostgres]:
    """A running private Postgres (trust auth) on a spare port, stopped at the end."""
    server = PrivatePostgres(private_dir)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis(private_dir: Path) -> Iterator[PrivateRedis]:
    """A running private Redis (append-only file) on a spare port, stopped at the end."""
    server = PrivateRedis(private_dir)
    server.start()
    try:
        yield server
    finally:
        server.close()
