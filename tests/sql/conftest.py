"""Fixtures of the SQL-layer tests: SQLite files in tmp_path, private Postgres databases motia_state_a_*."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.services import PG_ADMIN_URL, require

# Private databases of these tests: created and dropped here, never anyone else's.
PG_PREFIX = os.environ.get("MOTIA_STATE_TEST_PG_PREFIX", "motia_state_a_")


def pg_url_of(db: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db


async def create_pg_database() -> str:
    """A new empty database named PG_PREFIX + random suffix."""
    import asyncpg

    db = f"{PG_PREFIX}{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()
    return db


async def drop_pg_database(db: str) -> None:
    import asyncpg

    assert db.startswith(PG_PREFIX), db
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        with contextlib.suppress(asyncpg.InvalidCatalogNameError):
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


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
