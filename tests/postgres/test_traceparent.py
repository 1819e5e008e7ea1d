"""The writer's traceparent on Postgres: an untraced write sends exactly the statements of before, a traced one
its variant; the deferred trigger reads the transaction-local setting at commit, and it never outlives it.

(That every write keeps its caller's traceparent, batches and PgBouncer included, is the contract suite's.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from motia_state import StateManager, ops
from motia_state.backends.postgres import PostgresAdapter
from motia_state.backends.postgres.statements import statements
from motia_state.telemetry import OPERATION

pytestmark = pytest.mark.postgres

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TP2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every statement any asyncpg connection sends from now on (text, arguments)."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        original = getattr(asyncpg.connection.Connection, name)

        def wrap(original: Any = original) -> Any:
            async def call(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                out.append((query, args))
                return await original(self, query, *args, **kwargs)

            return call

        monkeypatch.setattr(asyncpg.connection.Connection, name, wrap())
    yield out


async def _every_write(pg: StateManager, adapter: PostgresAdapter) -> None:
    await pg.set("w", "a", {"n": 1})
    await pg.set("w", "t", 1, ttl=0.05)
    await asyncio.gather(*(pg.set("w", f"b{i % 5}", i) for i in range(20)))  # batched, in rounds
    await pg.update("w", "a", [ops.increment("n")])  # optimistic, live
    await pg.update("w", "new", [ops.set_("x", 1)])  # optimistic, new
    adapter._contended_until = asyncio.get_running_loop().time() + 60  # the locked path
    await pg.update("w", "a", [ops.increment("n")])
    adapter._contended_until = 0.0
    await pg.delete("w", "a")
    await pg.set_many("w", {"m1": 1, "m2": 2})
    assert await pg.delete_many("w", ["m1", "nope"]) == 1
    await asyncio.sleep(0.1)
    await pg.cleanup()
    assert await pg.clear("w") > 0


def _traced_texts() -> set[str]:
    q = vars(statements(None))
    return {v for k, v in q.items() if k.endswith("_TRACED") or k == "TRACE"}


async def test_untraced_writes_send_the_plain_statements_and_traced_ones_their_variants(
    pg: StateManager, adapter: PostgresAdapter, sent: list[tuple[str, tuple[Any, ...]]]
) -> None:
    await pg.connect()
    sent.clear()
    await _every_write(pg, adapter)
    plain = [(q, a) for q, a in sent]
    assert plain and not any("set_config" in q or "motia_state.trace" in q for q, _ in plain)
    assert not any(TP in map(str, a) for _, a in plain)
    assert not {q for q, _ in plain} & _traced_texts()
    sent.clear()
    token = OPERATION.set(TP)
    try:
        await _every_write(pg, adapter)
    finally:
        OPERATION.reset(token)
    texts = {q for q, _ in sent}
    q = statements(None)
    # Each kind of write went out as its traced variant (the batch with its one shared traceparent).
    for name in ("SET", "SET_BATCH", "SET_MANY", "DELETE", "DELETE_MANY", "CLEAR", "CLEANUP", "CAS_LIVE", "INSERT_NEW"):
        assert getattr(q, name + "_TRACED") in texts, name
        assert getattr(q, name) not in texts, name
    assert q.TRACE in texts  # the locked update's transaction
    for query, args in sent:
        if query in _traced_texts():
            assert args[-1] == TP, query


async def test_the_deferred_trigger_reads_the_setting_at_commit_and_it_ends_with_the_transaction(
    pg: StateManager, sql: Any
) -> None:
    await pg.connect()  # migrated, empty
    q = statements(None)
    await sql.fetchrow(q.SET_TRACED, "raw", "a", "1", None, TP)
    assert await sql.fetchval("SELECT current_setting('motia_state.trace', true)") == ""  # transaction-local
    await sql.fetchrow(q.SET, "raw", "a", "2", None)  # the same session, untraced: nothing left over
    async with sql.transaction():
        await sql.fetchval(q.TRACE, TP2)
        await sql.execute(q.WRITE_LOCKED_LIVE, "raw", "a", "3")
        # Deferred: nothing recorded before COMMIT, so the setting may come anywhere in the transaction.
        assert await sql.fetchval("SELECT count(*) FROM motia_state_changes WHERE scope = 'raw'") == 2
    # A batch of callers with different traceparents: the map, nested by scope then key (any characters).
    odd = 'k.{"}\\'
    trace_map = json.dumps({"raw": {"b": TP, odd: TP2}, "raw.b": {"c": TP}})
    await sql.fetch(
        q.SET_BATCH_TRACED,
        ["raw", "raw", "raw", "raw.b"],
        ["b", odd, "untraced", "c"],
        ["1", "2", "3", "4"],
        [None, None, None, None],
        trace_map,
    )
    await sql.execute("DELETE FROM motia_state WHERE scope = 'raw' AND key = 'b'")  # plain SQL
    rows = await sql.fetch("SELECT scope, key, event, traceparent FROM motia_state_changes ORDER BY revision")
    assert [tuple(r) for r in rows] == [
        ("raw", "a", "created", TP),
        ("raw", "a", "updated", None),
        ("raw", "a", "updated", TP2),
        ("raw", "b", "created", TP),
        ("raw", odd, "created", TP2),
        ("raw", "untraced", "created", None),
        ("raw.b", "c", "created", TP),
        ("raw", "b", "deleted", None),
    ]
