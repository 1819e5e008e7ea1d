"""Raw baseline for the SQLite adapter: aiosqlite, one connection, the adapter's SQL, WAL.

Same statements (imported from ``motia_state.backends.sqlite.statements``), same pragmas (WAL, synchronous=NORMAL), same
timestamp text. Each call is the ordinary aiosqlite way: one ``execute_fetchall`` per statement (one thread
hop each); writes that the adapter makes atomic (read the old value, then upsert) run between
``BEGIN IMMEDIATE`` and ``COMMIT``, as they must to be atomic too, one task at a time (an asyncio.Lock, since
the one connection holds one transaction at a time).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiosqlite

from motia_state.backends.sqlite import statements as sq

__all__ = ["RawSQLite"]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _ts(t: float) -> str:
    # The adapter's timestamp text: UTC 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


_CLEAR: Final = f"DELETE FROM {sq.TABLE_NAME} WHERE scope = ? RETURNING expires_at"


class RawSQLite:
    """One aiosqlite connection; one thread hop per statement."""

    kind = "raw"
    name = "aiosqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.db: aiosqlite.Connection | None = None
        # One connection holds one transaction at a time: concurrent tasks take turns for theirs.
        self.tx = asyncio.Lock()

    async def open(self) -> None:
        self.db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.db.execute("PRAGMA journal_mode = WAL")
        await self.db.execute("PRAGMA synchronous = NORMAL")
        await self.db.execute("PRAGMA busy_timeout = 5000")

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None

    @property
    def c(self) -> aiosqlite.Connection:
        assert self.db is not None
        return self.db

    async def reset(self) -> None:
        await self.c.execute("DELETE FROM motia_state")

    async def get(self, scope: str, key: str) -> Any:
        rows = list(await self.c.execute_fetchall(sq.SQL_GET, (scope, key, _ts(time.time()))))
        return json.loads(rows[0][0]) if rows else None

    async def set(self, scope: str, key: str, value: Any) -> Any:
        text = _dumps(value)
        db = self.c
        async with self.tx:
            await db.execute("BEGIN IMMEDIATE")
            try:
                now = _ts(time.time())
                rows = list(await db.execute_fetchall(sq.SQL_GET, (scope, key, now)))
                await db.execute(sq.SQL_UPSERT, (scope, key, text, None, now, now))
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        return json.loads(rows[0][0]) if rows else None

    async def update_inc(self, scope: str, key: str) -> Any:
        db = self.c
        async with self.tx:
            await db.execute("BEGIN IMMEDIATE")
            try:
                now = _ts(time.time())
                rows = list(await db.execute_fetchall(sq.SQL_GET_ENTRY, (scope, key, now)))
                value = json.loads(rows[0][0]) if rows else {}
                value["count"] = value.get("count", 0) + 1
                expires = rows[0][1] if rows else None
                await db.execute(sq.SQL_UPSERT, (scope, key, _dumps(value), expires, now, now))
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
        return value

    async def list(self, scope: str) -> list[Any]:
        rows = await self.c.execute_fetchall(sq.SQL_VALUES, (scope, _ts(time.time())))
        return [json.loads(r[0]) for r in rows]

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        db = self.c
        now = _ts(time.time())
        rows = [(scope, k, _dumps(v), None, now, now) for k, v in mapping.items()]
        async with self.tx:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(sq.SQL_UPSERT, rows)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def clear(self, scope: str) -> int:
        # One statement in autocommit mode is its own transaction (but not inside another task's).
        now = _ts(time.time())
        # One DELETE returning each removed row's expiry, the live ones counted here (the adapter's statement
        # until issue 18; the adapter now counts the expired rows first, then deletes without RETURNING).
        async with self.tx:
            rows = await self.c.execute_fetchall(_CLEAR, (scope,))
        return sum(1 for (expires,) in rows if expires is None or expires > now)

    # --- scale runs ------------------------------------------------------------------------------

    async def bulk_load(self, rows: Iterator[tuple[str, str, str, float | None]]) -> None:
        """executemany in one transaction, with the adapter's timestamp text (NULL = never expires)."""
        now = _ts(time.time())
        records = [(s, k, text, None if exp is None else _ts(exp), now, now) for s, k, text, exp in rows]
        db = self.c
        await db.execute("BEGIN IMMEDIATE")
        await db.executemany(
            'INSERT INTO motia_state (scope, "key", value, expires_at, created_at, updated_at)'
            " VALUES (?, ?, ?, ?, ?, ?)",
            records,
        )
        await db.execute("COMMIT")

    async def count_rows(self, expired: bool) -> int:
        now = _ts(time.time())
        if expired:
            sql = "SELECT count(*) FROM motia_state WHERE expires_at IS NOT NULL AND expires_at <= ?"
        else:
            sql = "SELECT count(*) FROM motia_state WHERE expires_at IS NULL OR expires_at > ?"
        rows = list(await self.c.execute_fetchall(sql, (now,)))
        return int(rows[0][0])

    async def settle(self) -> None:
        # SQLite gathers no statistics on its own; fold the WAL back into the file as a checkpoint would.
        await self.c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
