"""How the Postgres adapter stores state: real jsonb rows people can query, exact values, expiry in SQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from motia_state import StateBackendError, StateManager
from motia_state.backends.postgres import PostgresAdapter
from motia_state.testing.helpers import assert_same
from tests.services import PG_URL

pytestmark = pytest.mark.postgres


async def test_values_are_real_jsonb_queryable_with_plain_sql(pg: StateManager, sql: Any) -> None:
    await pg.set("trace-1", "booking", {"status": "confirmed", "seats": 2, "venue": {"city": "Lisbon"}})
    await pg.set("trace-1", "payment", {"status": "pending"})
    await pg.set("trace-2", "booking", {"status": "other scope"})
    rows = await sql.fetch(
        "SELECT key, value->>'status' AS status FROM motia_state WHERE scope = $1 ORDER BY key", "trace-1"
    )
    assert [(r["key"], r["status"]) for r in rows] == [("booking", "confirmed"), ("payment", "pending")]
    assert (
        await sql.fetchval(
            "SELECT jsonb_typeof(value->'seats') FROM motia_state WHERE key = 'booking' AND scope = 'trace-1'"
        )
        == "number"
    )
    assert (
        await sql.fetchval(
            "SELECT value #>> '{venue,city}' FROM motia_state WHERE scope = 'trace-1' AND key = 'booking'"
        )
        == "Lisbon"
    )
    assert await sql.fetchval("SELECT pg_typeof(value)::text FROM motia_state LIMIT 1") == "jsonb"


TRICKY: list[Any] = [
    1e16,
    1e300,
    1e-7,
    -2.5e-300,
    1.0,
    0.1,
    2**70,
    -(2**70),
    {},
    [],
    {"a": {}, "b": [], "c": [{}, []]},
    "é😀\\\"'%_",
    {"z": 1, "a": 2, "long key": 3},
    [1, 1.0, True, None, "1"],
]


@pytest.mark.parametrize("value", TRICKY, ids=repr)
async def test_exact_round_trip_through_jsonb(pg: StateManager, value: Any) -> None:
    await pg.set("s", "k", value)
    assert_same(await pg.get("s", "k"), value)
    assert_same((await pg.set("s", "k", 0)).old_value, value)
    await pg.set_many("s", {"m": value})
    assert_same((await pg.get_many("s", ["m"]))["m"], value)
    assert_same((await pg.update("s", "u", [{"type": "set", "path": "x", "value": value}])).new_value, {"x": value})
    assert_same(await pg.get("s", "u"), {"x": value})


async def test_floats_are_stored_as_json_floats(pg: StateManager, adapter: PostgresAdapter, sql: Any) -> None:
    await pg.set("s", "k", {"big": 1e16, "small": 1e-7, "one": 1.0, "int": 10**16})
    row = await sql.fetchrow(
        "SELECT value->>'big' AS big, value->>'small' AS small, value->>'one' AS one, value->>'int' AS int"
        " FROM motia_state WHERE scope = 's'"
    )
    assert dict(row) == {"big": "10000000000000000.0", "small": "0.0000001", "one": "1.0", "int": "10000000000000000"}
    # asyncpg hands jsonb over as text (no json codec re-encoding it): values.decode sees the server's text.
    text = await adapter._pg.pool.fetchval("SELECT value FROM motia_state WHERE scope = 's'")
    assert isinstance(text, str) and '"big": 10000000000000000.0' in text


async def test_numeric_filters_compare_numbers_not_text(pg: StateManager) -> None:
    for n in (9, 10, 100, 9.5, -1):
        await pg.set("s", f"k{n}", {"n": n})
    got = await pg.items("s", filters=[{"path": "n", "op": "gt", "value": 9}])
    assert sorted(i.value["n"] for i in got) == [9.5, 10, 100]
    got = await pg.items("s", filters=[{"path": "n", "op": "lt", "value": 10}])
    assert sorted(i.value["n"] for i in got) == [-1, 9, 9.5]


async def test_clear_deletes_exactly_one_scope_even_with_like_characters(pg: StateManager, sql: Any) -> None:
    for scope in ("a%", "a_", "ab", "a%b", "A%", "a%%"):
        await pg.set(scope, "k", scope)
        await pg.set(scope, "k2", scope)
    assert await pg.clear("a%") == 2
    assert await pg.clear("a_") == 2
    left = [r[0] for r in await sql.fetch("SELECT DISTINCT scope FROM motia_state ORDER BY 1")]
    assert left == sorted(["ab", "a%b", "A%", "a%%"])


async def test_cleanup_removes_many_expired_rows_in_batches(pg: StateManager, sql: Any) -> None:
    # More rows than one cleanup batch (5000), inserted directly so the test stays fast.
    await sql.execute(
        "INSERT INTO motia_state (scope, key, value, expires_at) SELECT 'old', 'k' || i, '1', now() - interval '1 s'"
        " FROM generate_series(1, 12345) AS i"
    )
    await pg.set("live", "k", 1)
    await pg.set("live", "later", 1, ttl=3600)
    assert await pg.list_groups() == ["live"]
    assert await pg.cleanup() == 12345
    assert await sql.fetchval("SELECT count(*) FROM motia_state") == 2
    assert await pg.cleanup() == 0


async def test_concurrent_cleanups_remove_each_row_once(pg: StateManager, sql: Any) -> None:
    await sql.execute(
        "INSERT INTO motia_state (scope, key, value, expires_at) SELECT 'old', 'k' || i, '1', now() - interval '1 s'"
        " FROM generate_series(1, 11000) AS i"
    )
    others = [StateManager.from_url(PG_URL, migrate="off") for _ in range(3)]
    try:
        counts = await asyncio.gather(pg.cleanup(), *(o.cleanup() for o in others))
    finally:
        for o in others:
            await o.close()
    assert sum(counts) == 11000
    assert await sql.fetchval("SELECT count(*) FROM motia_state") == 0


async def test_expiry_uses_the_database_clock(pg: StateManager, sql: Any) -> None:
    await pg.set("s", "k", 1, ttl=100)
    left = await sql.fetchval("SELECT extract(epoch FROM expires_at - now()) FROM motia_state WHERE key = 'k'")
    assert 98 < float(left) <= 100
    # A row whose expiry the database clock has passed is invisible to every read.
    await sql.execute("UPDATE motia_state SET expires_at = now() - interval '1 ms'")
    assert await pg.get("s", "k") is None
    assert await pg.keys("s") == []
    assert await pg.ttl("s", "k") is None
    assert (await pg.set("s", "k", 2)).old_value is None


async def test_overwrite_keeps_created_at_and_moves_updated_at(pg: StateManager, sql: Any) -> None:
    await pg.set("s", "k", 1)
    await sql.execute(
        "UPDATE motia_state SET created_at = now() - interval '1 day', updated_at = now() - interval '1 day'"
    )
    await pg.set("s", "k", 2)
    await pg.update("s", "k", [{"type": "set", "path": "", "value": 3}])
    row = await sql.fetchrow(
        "SELECT now() - created_at > interval '23 hours' AS kept, now() - updated_at < interval '1 hour' AS moved"
        " FROM motia_state"
    )
    assert row["kept"] and row["moved"]


async def test_set_many_is_all_or_nothing(pg: StateManager, refuse_boom: None) -> None:
    await pg.set("s", "a", "before")
    # A trigger that refuses one key makes the server fail the statement half-way through the rows.
    with pytest.raises(StateBackendError, match="refused by test trigger"):
        await pg.set_many("s", {"a": "after", "b": 1, "boom": 2, "c": 3})
    assert await pg.get_many("s", ["a", "b", "boom", "c"]) == {"a": "before"}


async def test_failed_update_writes_nothing(pg: StateManager) -> None:
    from motia_state import UpdateOpError

    await pg.set("s", "k", {"n": "text"}, ttl=50)
    with pytest.raises(UpdateOpError):
        await pg.update("s", "k", [{"type": "increment", "path": "m"}, {"type": "increment", "path": "n"}])
    assert await pg.get("s", "k") == {"n": "text"}
    ttl = await pg.ttl("s", "k")
    assert ttl is not None and 45 < ttl <= 50
