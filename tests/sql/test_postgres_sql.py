"""Plain-SQL recipes of the README on Postgres, and the Postgres side of the schema."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from motia_state import StateManager
from tests.sql.test_sqlite import _fill_for_recipes

pytestmark = pytest.mark.postgres

POSTGRES_RECIPES = {
    "status": "SELECT key, value->>'status' AS status FROM motia_state WHERE scope = 'orders' ORDER BY key",
    "live": (
        "SELECT scope, key, value FROM motia_state WHERE expires_at IS NULL OR expires_at > now() ORDER BY scope, key"
    ),
    "per_scope": (
        "SELECT scope, count(*) AS entries FROM motia_state "
        "WHERE expires_at IS NULL OR expires_at > now() GROUP BY scope ORDER BY scope"
    ),
}


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def test_readme_postgres_recipes(pg_db_url: str) -> None:
    state = StateManager.from_url(pg_db_url)
    try:
        await _fill_for_recipes(state)
    finally:
        await state.close()
    conn = await asyncpg.connect(_dsn(pg_db_url))
    try:
        status = [tuple(r) for r in await conn.fetch(POSTGRES_RECIPES["status"])]
        live = [(r["scope"], r["key"]) for r in await conn.fetch(POSTGRES_RECIPES["live"])]
        per_scope = [tuple(r) for r in await conn.fetch(POSTGRES_RECIPES["per_scope"])]
        kinds = await conn.fetchrow(
            "SELECT data_type, collation_name FROM information_schema.columns "
            "WHERE table_name = 'motia_state' AND column_name = 'key'"
        )
        value_type = await conn.fetchval(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'motia_state' AND column_name = 'value'"
        )
    finally:
        await conn.close()
    assert status == [("o1", "paid"), ("o2", "open"), ("o3", "gone")]
    assert live == [("orders", "o1"), ("orders", "o2"), ("users", "u1")]
    assert per_scope == [("orders", 2), ("users", 1)]
    assert tuple(kinds) == ("text", "C")
    assert value_type == "jsonb"


async def test_sqlite_and_postgres_tables_hold_the_same_json(pg_db_url: str, sqlite_url: str) -> None:
    values = {"a": {"n": 1.0, "big": 2**70, "s": "é😀%_", "l": [None, True, 0.1]}, "b": [], "c": 1.0}
    for url in (pg_db_url, sqlite_url):
        state = StateManager.from_url(url)
        try:
            await state.set_many("s", values)
            await asyncio.sleep(0)
            assert await state.get_many("s", list(values)) == values
        finally:
            await state.close()
