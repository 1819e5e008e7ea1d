"""Fixtures of the SQL-layer tests: SQLite files in tmp_path, private Postgres databases motia_state_a_*."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.services import create_private_pg_database, drop_private_pg_database, pg_url_of, require

# Private databases of these tests: created and dropped here, never anyone else's.
PG_PREFIX = os.environ.get("MOTIA_STATE_TEST_PG_PREFIX", "motia_state_a_")


async def create_pg_database() -> str:
    """A new empty database named PG_PREFIX + random suffix."""
    return await create_private_pg_database(PG_PREFIX)


async def drop_pg_database(db: str) -> None:
    await drop_private_pg_database(db, PG_PREFIX)


@pytest.fixture
async def pg_db_url() -> AsyncIterator[str]:
    """URL of a fresh, empty private Postgres database (dropped afterwards)."""
    require("postgres")
    db = await create_pg_database()
    try:
        yield pg_url_of(db)
    finally:
        await drop_pg_database(db)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each SQL kind."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_db_url"))


SqlFetch = Callable[[str, str], object]
