"""Raw baseline for the Redis adapter: redis-py (hiredis parser) sending the adapter's exact commands.

The same keys (``<prefix>{<scope>}:<key>``, the scope's sorted-set index, the scope registry) and the same
commands and Lua scripts as ``motia_state.backends.redis.scripts`` (the script texts are imported from it, so the two
cannot drift), through redis-py's ordinary client and a blocking pool of the adapter's size; no motia-state
layer (no validation, no error translation, no retry loop, no semaphore). On a Redis Cluster
(``redis+cluster://`` URLs) the same commands through redis-py's ``RedisCluster``, which routes them by slot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import redis.asyncio as aioredis

from motia_state.backends.redis import scripts

__all__ = ["RawRedis"]

PREFIX = "motia:state:"
REGISTRY = PREFIX + "__scopes__"
_SET = scripts.SET
_CAS = scripts.CAS
_VALUES = scripts.VALUES
_CLEAR = scripts.CLEAR
_SET_MANY = scripts.SET_MANY
# A writing script's three change-feed arguments after its own, blank: changes off (``scripts.recorder``).
_NO_REC = ("", "", "")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _tag(scope: str) -> str:
    return PREFIX + "{" + scope.replace("%", "%25").replace("}", "%7D") + "}"


class RawRedis:
    """redis-py with hiredis: one command (or one pipelined pair) per operation, like the adapter. Scripts in a
    pipeline go through ``execute_command`` (a Cluster pipeline refuses ``evalsha``; the adapter does the same)."""

    kind = "raw"
    name = "redis-py+hiredis"

    def __init__(self, url: str, pool_size: int) -> None:
        self.url = url
        self.pool_size = pool_size
        self.cluster = url.startswith("redis+cluster://")
        if self.cluster:
            self.name = "redis-py+hiredis RedisCluster"
        self.client: Any = None

    async def open(self) -> None:
        if self.cluster:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            hosts = self.url.split("://", 1)[1].split("/", 1)[0].split(",")
            seeds = [ClusterNode(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in hosts]
            self.client = RedisCluster(startup_nodes=seeds, max_connections=self.pool_size)
            await self.client.initialize()
        else:
            pool = aioredis.BlockingConnectionPool.from_url(self.url, max_connections=self.pool_size)
            self.client = aioredis.Redis(connection_pool=pool)
        await self._load_scripts()

    async def _load_scripts(self) -> None:
        for script in (_SET, _CAS, _VALUES, _CLEAR, _SET_MANY):
            if self.cluster:
                await self.client.execute_command(
                    "SCRIPT", "LOAD", script.text, target_nodes=self.client.get_primaries()
                )
            else:
                await self.client.script_load(script.text)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            if not self.cluster:
                await self.client.connection_pool.disconnect()
            self.client = None

    @property
    def r(self) -> Any:
        assert self.client is not None
        return self.client

    async def reset(self) -> None:
        # db 9 (or the cluster given for the benchmark) is this benchmark's own; nothing else lives there.
        if self.cluster:
            await self.r.flushall(target_nodes=self.r.get_primaries())
        else:
            await self.r.flushdb()
        await self._load_scripts()

    async def get(self, scope: str, key: str) -> Any:
        text = await self.r.get(_tag(scope) + ":" + key)
        return None if text is None else json.loads(text)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        tag = _tag(scope)
        pipe = self.r.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", _SET.sha, 2, tag + ":" + key, tag, _dumps(value), key, "", *_NO_REC)
        pipe.sadd(REGISTRY, scope)
        old, _ = await pipe.execute()
        return None if old is None else json.loads(old)

    async def update_inc(self, scope: str, key: str) -> Any:
        # The adapter's optimistic compare-and-swap: GET, then the CAS script, which on a lost race
        # answers with the current text (older script versions answered 0 and the text was read again).
        tag = _tag(scope)
        ekey = tag + ":" + key
        text = await self.r.get(ekey)
        while True:
            value = {} if text is None else json.loads(text)
            value["count"] = value.get("count", 0) + 1
            new = _dumps(value)
            if text is None:
                pipe = self.r.pipeline(transaction=False)
                pipe.execute_command("EVALSHA", _CAS.sha, 2, ekey, tag, "0", "", new, key, "", *_NO_REC)
                pipe.sadd(REGISTRY, scope)
                reply = (await pipe.execute())[0]
            else:
                reply = await self.r.evalsha(_CAS.sha, 2, ekey, tag, "1", text, new, key, "", *_NO_REC)
            if isinstance(reply, list):
                if reply[0] == 1:
                    return value
                text = reply[1] if len(reply) > 1 else None
            elif reply == 1:
                return value
            else:
                text = await self.r.get(ekey)

    async def list(self, scope: str) -> list[Any]:
        tag = _tag(scope)
        members, texts = await self.r.evalsha(_VALUES.sha, 1, tag, tag + ":", "")
        return [json.loads(t) for _, t in sorted(zip(members, texts, strict=True)) if t is not None]

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        tag = _tag(scope)
        args: list[str] = []
        for k, v in mapping.items():
            args.append(k)
            args.append(_dumps(v))
        pipe = self.r.pipeline(transaction=False)
        # The three blank recorder arguments (changes off) come before the pairs, as the adapter sends them.
        pipe.execute_command("EVALSHA", _SET_MANY.sha, 1, tag, tag + ":", "", "", "", "", *args)
        pipe.sadd(REGISTRY, scope)
        await pipe.execute()

    async def clear(self, scope: str) -> int:
        tag = _tag(scope)
        return int(await self.r.evalsha(_CLEAR.sha, 1, tag, tag + ":", *_NO_REC))

    # --- scale runs ------------------------------------------------------------------------------

    async def bulk_load(self, rows: Iterator[tuple[str, str, str, float | None]]) -> None:
        """Per scope one MSET of its strings, one ZADD of its index members, one SADD to the registry;
        pipelines of 3,000 such commands.

        An expired row is what Redis leaves behind after its native expiry: the index member with a past
        score (the string itself is already gone).
        """
        pipe = self.r.pipeline(transaction=False)
        pending = 0

        def flush_scope(scope: str, strings: dict[str, str], index: dict[str, float]) -> None:
            tag = _tag(scope)
            if strings:
                pipe.mset({tag + ":" + k: v for k, v in strings.items()})
            pipe.zadd(tag, index)
            pipe.sadd(REGISTRY, scope)

        current: str | None = None
        strings: dict[str, str] = {}
        index: dict[str, float] = {}
        for scope, key, text, expires in rows:
            if scope != current:
                if current is not None:
                    flush_scope(current, strings, index)
                    pending += 3
                    if pending >= 3000:
                        await pipe.execute()
                        pending = 0
                current, strings, index = scope, {}, {}
            if expires is None:
                strings[key] = text
                index[key] = float("inf")
            else:
                index[key] = int(expires * 1000)
        if current is not None:
            flush_scope(current, strings, index)
        await pipe.execute()

    async def count_rows(self, expired: bool) -> int:
        now = int(time.time() * 1000)
        scopes = [s.decode() if isinstance(s, bytes) else s for s in await self.r.smembers(REGISTRY)]
        total = 0
        for start in range(0, len(scopes), 2000):
            pipe = self.r.pipeline(transaction=False)
            for s in scopes[start : start + 2000]:
                if expired:
                    pipe.zcount(_tag(s), "-inf", now)
                else:
                    pipe.zcount(_tag(s), f"({now}", "+inf")
            total += sum(int(n) for n in await pipe.execute())
        return total

    async def settle(self) -> None:
        return None
