"""Raw baseline for the Postgres adapter: asyncpg, one prepared statement per operation, same SQL text.

The statements are imported from ``motia_state.backends.postgres.statements`` so the baseline sends exactly the text
the adapter sends (expiry filter included); asyncpg prepares and caches each per connection, as it does for
the adapter. The pool is the adapter's size, with the adapter's pool settings (set
MOTIA_STATE_BENCH_PG_DEFAULT_POOL=1 for asyncpg's defaults, whose reset on release costs a round trip).
What is left out is the motia-state layer: validation, the batching of concurrent calls, retries, error
translation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from motia_state.backends.postgres import connection as pg_connection
from motia_state.backends.postgres import statements as pg

__all__ = ["RawPostgres"]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class RawPostgres:
    """asyncpg pool; ``pool.fetchrow/fetchval/execute`` with the adapter's statements."""

    kind = "raw"
    name = "asyncpg"

    def __init__(self, url: str, pool_size: int, *, same_pool_settings: bool = True, pooler: bool = False) -> None:
        self.url = url
        self.pool_size = pool_size
        self.same_pool_settings = same_pool_settings
        self.pooler = pooler
        if not same_pool_settings:
            self.name = "asyncpg (default pool)"
        if pooler:
            self.name = "asyncpg (statement_cache_size=0)"
        self.pool: Any = None

    async def open(self) -> None:
        options: dict[str, Any] = {}
        if self.pooler:
            # Behind PgBouncer in transaction mode: no prepared statement kept, no session setting.
            options["statement_cache_size"] = 0
        elif self.same_pool_settings:
            # The adapter's pool settings (a no-op reset on release instead of asyncpg's RESET ALL round
            # trip, its server settings): the ratio then measures the layer, not a pool configuration.
            # (Looked up in the connection module, where they live: looked up in `statements`, as until
            # 2026-12-02, they were silently missing and the raw side ran asyncpg's default pool.)
            options["reset"] = pg_connection._keep_session
            options["server_settings"] = dict(pg_connection._SESSION)
            # And its statement timeout: asyncpg arms a timer per statement for it (a tenth of an update).
            options["command_timeout"] = pg_connection.DEFAULT_COMMAND_TIMEOUT
        self.pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size, **options)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def reset(self) -> None:
        await self.pool.execute("TRUNCATE motia_state")

    async def get(self, scope: str, key: str) -> Any:
        text = await self.pool.fetchval(pg.GET, scope, key)
        return None if text is None else json.loads(text)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        text = _dumps(value)
        while True:
            old, written = await self.pool.fetchrow(pg.SET, scope, key, text, None)
            if written:
                return None if old is None else json.loads(old)

    async def update_inc(self, scope: str, key: str) -> Any:
        # The adapter's optimistic path: read with the row version, write if unchanged (two statements).
        while True:
            row = await self.pool.fetchrow(pg.READ_VERSIONED, scope, key)
            value = json.loads(row[0]) if row is not None and row[1] else {}
            value["count"] = value.get("count", 0) + 1
            text = _dumps(value)
            if row is None:
                ok = await self.pool.fetchval(pg.INSERT_NEW, scope, key, text, None)
            else:
                ok = await self.pool.fetchval(pg.CAS_LIVE, scope, key, text, row[2])
            if ok is not None:
                return value

    async def list(self, scope: str) -> list[Any]:
        return [json.loads(r[0]) for r in await self.pool.fetch(pg.VALUES, scope)]

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        keys = list(mapping)
        await self.pool.execute(pg.SET_MANY, scope, keys, [_dumps(mapping[k]) for k in keys], None)

    async def clear(self, scope: str) -> int:
        return int(await self.pool.fetchval(pg.CLEAR, scope))

    # --- scale runs ------------------------------------------------------------------------------

    async def bulk_load(self, rows: Iterator[tuple[str, str, str, float | None]]) -> None:
        """COPY in the adapter's format: jsonb value from JSON text, timestamptz expiry (NULL = never)."""
        records = [
            (scope, key, text, None if exp is None else datetime.fromtimestamp(exp, UTC))
            for scope, key, text, exp in rows
        ]
        async with self.pool.acquire() as conn:
            await conn.copy_records_to_table(
                "motia_state", records=records, columns=["scope", "key", "value", "expires_at"]
            )

    async def count_rows(self, expired: bool) -> int:
        where = "expires_at <= now()" if expired else "expires_at IS NULL OR expires_at > now()"
        return int(await self.pool.fetchval(f"SELECT count(*) FROM motia_state WHERE {where}"))

    async def settle(self) -> None:
        # What autovacuum and the checkpointer do on their own after a bulk load, done before the timing
        # instead of during it (and the planner sees the real table size).
        await self.pool.execute("VACUUM ANALYZE motia_state")
        await self.pool.execute("CHECKPOINT")
