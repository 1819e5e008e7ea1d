"""Fixtures of the Postgres-only tests: a fresh store on the private test database, and raw SQL access."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.backends.postgres import PostgresAdapter
from tests.conftest import make_postgres
from tests.services import PG_URL


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[StateManager]:
    """An empty store on the test database (table truncated)."""
    store = await make_postgres(tmp_path)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def adapter(pg: StateManager) -> PostgresAdapter:
    """The adapter behind ``pg``."""
    assert isinstance(pg.adapter, PostgresAdapter)
    return pg.adapter


@pytest.fixture
async def sql() -> AsyncIterator[Any]:
    """A plain asyncpg connection to the test database, for looking at the table as users do."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_URL)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def refuse_boom(sql: Any) -> AsyncIterator[None]:
    """A trigger that makes the server refuse any write of key 'boom' (a failure half-way through a statement)."""
    await sql.execute(
        """
        CREATE OR REPLACE FUNCTION motia_state_b_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.key = 'boom' THEN RAISE EXCEPTION 'refused by test trigger'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER motia_state_b_refuse BEFORE INSERT OR UPDATE ON motia_state
            FOR EACH ROW EXECUTE FUNCTION motia_state_b_refuse();
        """
    )
    try:
        yield
    finally:
        await sql.execute("DROP TRIGGER motia_state_b_refuse ON motia_state; DROP FUNCTION motia_state_b_refuse()")
