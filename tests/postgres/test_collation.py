"""Ordering is by code point whatever the database collation (the key columns are COLLATE "C")."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from motia_state import StateManager
from tests.services import PG_ADMIN_URL, PG_URL

pytestmark = pytest.mark.postgres

ICU_DB = "motia_state_b_icu"
NAMES = ["b", "B", "a", "A", "é", "e", "z", "_", "ä", "a b", "ab", "Z", "😀", "1", "10", "9"]


@pytest.fixture
async def icu_store() -> AsyncIterator[StateManager]:
    """A store on a database whose default collation is ICU en-US (where 'a' < 'B')."""
    import asyncpg  # type: ignore[import-untyped]

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", ICU_DB):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(
                    f"CREATE DATABASE \"{ICU_DB}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
                    " LOCALE 'C.UTF-8'"
                )
    except asyncpg.PostgresError as exc:  # e.g. a server built without ICU
        pytest.skip(f"cannot create an ICU database here: {exc}")
    finally:
        await admin.close()
    url = PG_URL.rsplit("/", 1)[0] + "/" + ICU_DB
    store = StateManager.from_url(url)
    await store.connect()
    conn = await asyncpg.connect(url)
    try:
        # The premise: this database's own collation does not sort by code point.
        assert await conn.fetchval("SELECT 'a' < 'B'") is True
        await conn.execute("TRUNCATE motia_state")
    finally:
        await conn.close()
    try:
        yield store
    finally:
        await store.close()


async def test_keys_values_items_and_groups_sort_by_code_point(icu_store: StateManager) -> None:
    for name in NAMES:
        await icu_store.set("s", name, name)
        await icu_store.set(name, "k", name)
    expected = sorted(NAMES)
    assert await icu_store.keys("s") == expected
    assert await icu_store.list("s") == expected
    assert [i.key for i in await icu_store.items("s")] == expected
    assert await icu_store.list_groups() == sorted([*NAMES, "s"])
    assert [i.scope for i in await icu_store.items()] == sorted([*NAMES, "s"] + ["s"] * (len(NAMES) - 1))


async def test_string_filters_compare_by_code_point(icu_store: StateManager) -> None:
    for name in NAMES:
        await icu_store.set("s", name, {"name": name})
    got = await icu_store.items("s", filters=[{"path": "name", "op": "gt", "value": "B"}])
    assert [i.value["name"] for i in got] == sorted(n for n in NAMES if n > "B")
    got = await icu_store.items("s", filters=[{"path": "name", "op": "lte", "value": "a"}])
    assert [i.value["name"] for i in got] == sorted(n for n in NAMES if n <= "a")
