"""The peers a user would pick instead of motia-state, as benchmark subjects (issue 18).

LangGraph's ``AsyncPostgresStore`` / ``AsyncSqliteStore`` and py-key-value-aio's Postgres, Redis and memory
stores, each driven through its simplest natural API: a LangGraph namespace ``(scope,)`` with ``aget`` /
``aput`` / ``abatch`` / ``asearch``; py-key-value ``collection=scope`` with ``get`` / ``put`` / ``put_many`` /
``keys`` / ``get_many`` / ``delete_many``. What a peer cannot do is in its ``skips`` (workload -> reason) and is
reported instead of measured. Every peer has private storage: Postgres database ``motia_state_bench_peers``,
Redis db 7 (flushed on reset: it is theirs), SQLite files in the benchmark's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Mapping
from contextlib import AsyncExitStack
from importlib import metadata
from pathlib import Path
from typing import Any, Final

__all__ = [
    "PEER_DB",
    "KeyValuePeer",
    "LangGraphPeer",
    "make_peers",
    "peer_redis_url",
]

#: The peers' own Postgres database (created through the admin URL).
PEER_DB: Final = "motia_state_bench_peers"

# Entries a listed / cleared scope can hold in this benchmark (100) with room to spare: LangGraph's
# ``asearch`` returns 10 items unless told otherwise.
_SEARCH_LIMIT: Final = 1000

_NO_RMW: Final = "no atomic read-modify-write in its API (a get then a put loses concurrent increments)"


def peer_redis_url() -> str:
    """Redis db 7 on the benchmark's server: the peers' own."""
    default = os.environ.get("MOTIA_STATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9").rsplit("/", 1)[0] + "/7"
    return os.environ.get("MOTIA_STATE_BENCH_PEERS_REDIS_URL", default)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


class LangGraphPeer:
    """A LangGraph ``BaseStore`` (Postgres or SQLite): namespace ``(scope,)``, one item per key."""

    kind = "peer"
    skips: Mapping[str, str] = {"update": _NO_RMW}

    def __init__(self, backend: str, *, url: str = "", path: str = "", pool_size: int = 0) -> None:
        self.backend = backend
        self.url = url
        self.path = path
        self.pool_size = pool_size
        cls = "AsyncPostgresStore" if backend == "postgres" else "AsyncSqliteStore"
        dist = "langgraph-checkpoint-postgres" if backend == "postgres" else "langgraph-checkpoint-sqlite"
        self.name = "langgraph"
        self.label = f"LangGraph {cls} ({dist} {_version(dist)})"
        self.store: Any = None
        self._stack = AsyncExitStack()

    async def open(self) -> None:
        if self.backend == "postgres":
            from langgraph.store.postgres import AsyncPostgresStore
            from langgraph.store.postgres.base import PoolConfig

            # The documented pooled form; the pool is the adapter's size.
            pool = PoolConfig(min_size=1, max_size=self.pool_size)
            self.store = await self._stack.enter_async_context(
                AsyncPostgresStore.from_conn_string(self.url, pool_config=pool)
            )
        else:
            import aiosqlite
            from langgraph.store.sqlite.aio import AsyncSqliteStore

            conn = await aiosqlite.connect(self.path, isolation_level=None)
            self._stack.push_async_callback(conn.close)
            # The adapter's durability settings, so that the row compares the layers, not a journal mode.
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            self.store = AsyncSqliteStore(conn)
        await self.store.setup()

    async def close(self) -> None:
        if self.store is not None:
            # The store's batching loop is a task of its own: end it before its connection goes.
            task = getattr(self.store, "_task", None)
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self.store = None
        await self._stack.aclose()

    async def reset(self) -> None:
        if self.backend == "postgres":
            async with self.store.conn.connection() as conn:
                await conn.execute("TRUNCATE store CASCADE")
        else:
            async with self.store.lock:
                await self.store.conn.execute("DELETE FROM store")

    async def get(self, scope: str, key: str) -> Any:
        item = await self.store.aget((scope,), key)
        return None if item is None else item.value

    async def set(self, scope: str, key: str, value: Any) -> Any:
        # ``aput`` returns nothing: LangGraph has no way to hand back the old value.
        await self.store.aput((scope,), key, value)
        return None

    async def update_inc(self, scope: str, key: str) -> Any:
        raise NotImplementedError(self.skips["update"])

    async def list(self, scope: str) -> list[Any]:
        items = await self.store.asearch((scope,), limit=_SEARCH_LIMIT)
        return [i.value for i in items]

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        from langgraph.store.base import PutOp

        await self.store.abatch([PutOp((scope,), k, v) for k, v in mapping.items()])

    async def clear(self, scope: str) -> int:
        from langgraph.store.base import PutOp

        # No "delete a namespace" in the API: find the items, then one batch of deletes (a put of None).
        items = await self.store.asearch((scope,), limit=_SEARCH_LIMIT)
        if items:
            await self.store.abatch([PutOp((scope,), i.key, None) for i in items])
        return len(items)


class KeyValuePeer:
    """A py-key-value-aio store (Postgres, Redis or memory): ``collection=scope``."""

    kind = "peer"

    def __init__(self, backend: str, *, url: str = "", pool_size: int = 0) -> None:
        self.backend = backend
        self.url = url
        self.pool_size = pool_size
        cls = {"postgres": "PostgreSQLStore", "redis": "RedisStore", "memory": "MemoryStore"}[backend]
        self.name = "py-key-value"
        self.label = f"py-key-value-aio {cls} ({_version('py-key-value-aio')})"
        skips = {"update": _NO_RMW}
        if backend == "postgres":
            skips["list100"] = "PostgreSQLStore 0.5 cannot enumerate a collection's keys (no keys())"
        self.skips: Mapping[str, str] = skips
        self.store: Any = None
        self._client: Any = None

    def _new_store(self) -> Any:
        from key_value.aio.stores.memory import MemoryStore

        return MemoryStore()

    async def open(self) -> None:
        if self.backend == "postgres":
            import asyncpg  # type: ignore[import-untyped]
            from key_value.aio.stores.postgresql import PostgreSQLStore

            # The store takes a pool: the adapter's size, asyncpg's defaults otherwise.
            self._client = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size)
            with warnings.catch_warnings():
                # Its constructor warns that the store's API is not declared stable yet: known, and said once here.
                warnings.filterwarnings("ignore", "A configured store is unstable", UserWarning)
                self.store = PostgreSQLStore(pool=self._client)
        elif self.backend == "redis":
            import redis.asyncio as aioredis
            from key_value.aio.stores.redis import RedisStore

            # The store reads replies as str (decode_responses); a blocking pool of the adapter's size.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=self.pool_size, decode_responses=True
            )
            self._client = aioredis.Redis(connection_pool=pool)
            await self._client.ping()  # the store connects lazily: a server that is down shows here, not mid-row
            self.store = RedisStore(client=self._client)
        else:
            self.store = self._new_store()
        await self.store.setup()

    async def close(self) -> None:
        if self.store is not None and self.backend == "memory":
            self.store = None
        if self._client is not None:
            if self.backend == "postgres":
                await self._client.close()
            else:
                await self._client.aclose()
                await self._client.connection_pool.disconnect()
            self._client = None

    async def reset(self) -> None:
        if self.backend == "postgres":
            await self._client.execute("TRUNCATE kv_store")
        elif self.backend == "redis":
            await self._client.flushdb()  # db 7: the peers' own
        else:
            # A fresh store: MemoryStore 0.5.0 keeps a destroyed collection marked as set up, and its next
            # put then fails with KeyError ("has not been setup").
            self.store = self._new_store()
            await self.store.setup()

    async def get(self, scope: str, key: str) -> Any:
        return await self.store.get(key, collection=scope)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        # ``put`` returns nothing: no old value.
        await self.store.put(key, value, collection=scope)
        return None

    async def update_inc(self, scope: str, key: str) -> Any:
        raise NotImplementedError(self.skips["update"])

    async def list(self, scope: str) -> list[Any]:
        keys = await self.store.keys(scope)
        values = await self.store.get_many(keys, collection=scope)
        return [v for v in values if v is not None]

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        await self.store.put_many(list(mapping), list(mapping.values()), collection=scope)

    async def clear(self, scope: str) -> int:
        if self.backend == "postgres":
            # No keys() to find the entries: the collection's one DELETE, which answers only "any removed".
            return int(await self.store.destroy_collection(scope))
        keys = await self.store.keys(scope)
        return int(await self.store.delete_many(keys, collection=scope)) if keys else 0


async def make_peers(adapter: str, *, tmpdir: Path, pool_size: int) -> tuple[list[Any], list[str]]:
    """The peers of ``adapter`` (built, not opened) and a note for each one whose package does not import."""
    from bench.backends import ensure_pg_database, pg_url

    peers: list[Any] = []
    missing: list[str] = []

    def importable(module: str, extra: str) -> bool:
        try:
            __import__(module)
        except ImportError as exc:
            missing.append(f"{adapter}: peer {extra} not installed ({exc}); pip install -e '.[bench]'")
            return False
        return True

    if adapter == "postgres":
        langgraph = importable("langgraph.store.postgres", "langgraph-checkpoint-postgres")
        key_value = importable("key_value.aio.stores.postgresql", "py-key-value-aio[postgresql]")
        if langgraph or key_value:
            await ensure_pg_database(PEER_DB)
        if langgraph:
            peers.append(LangGraphPeer("postgres", url=pg_url(PEER_DB), pool_size=pool_size))
        if key_value:
            peers.append(KeyValuePeer("postgres", url=pg_url(PEER_DB), pool_size=pool_size))
    elif adapter == "sqlite":
        if importable("langgraph.store.sqlite.aio", "langgraph-checkpoint-sqlite"):
            peers.append(LangGraphPeer("sqlite", path=str(tmpdir / "peer-langgraph.db")))
    elif adapter == "redis":
        if importable("key_value.aio.stores.redis", "py-key-value-aio[redis]"):
            peers.append(KeyValuePeer("redis", url=peer_redis_url(), pool_size=pool_size))
    elif adapter == "memory" and importable("key_value.aio.stores.memory", "py-key-value-aio[memory]"):
        peers.append(KeyValuePeer("memory"))
    return peers, missing
