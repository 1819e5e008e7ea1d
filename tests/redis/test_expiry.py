"""Native expiry and the scope index: entries expire in Redis, the index stays right, cleanup prunes it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from motia_state import StateManager

pytestmark = pytest.mark.redis

REGISTRY = "motia:state:__scopes__"


async def _past_expiry(raw: aioredis.Redis, *keys: str) -> None:
    """Wait until Redis itself reports every key gone (bounded)."""
    for _ in range(200):
        if await raw.exists(*keys) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{keys} did not expire")


async def test_ttl_is_native_with_millisecond_precision(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("s", "k", 1, ttl=12.345)
    pttl = await raw.pttl("motia:state:{s}:k")
    assert 12_000 < pttl <= 12_345
    left = await state.ttl("s", "k")
    assert left is not None and 12.0 < left <= 12.345
    await state.set("s", "k", 2)  # a set replaces the earlier expiry
    assert await raw.pttl("motia:state:{s}:k") == -1
    assert await state.ttl("s", "k") is None
    assert await state.ttl("s", "missing") is None


async def test_update_keeps_the_native_ttl(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("s", "k", {"n": 1}, ttl=30)
    await state.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])
    assert 25_000 < await raw.pttl("motia:state:{s}:k") <= 30_000
    score = await raw.zscore("motia:state:{s}", "k")
    assert score is not None and abs(score - await raw.pexpiretime("motia:state:{s}:k")) <= 5


async def test_items_expires_at_comes_from_the_index(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("s", "a", 1, ttl=100)
    await state.set("s", "b", 2)
    a, b = await state.items("s")
    assert b.expires_at is None
    assert a.expires_at is not None and a.expires_at.tzinfo is not None
    redis_ms = await raw.pexpiretime("motia:state:{s}:a")
    assert abs(a.expires_at.timestamp() * 1000 - redis_ms) <= 5
    assert abs((a.expires_at - datetime.now(UTC)).total_seconds() - 100) < 5


async def test_index_survives_native_expiry(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set_many("mixed", {"gone1": 1, "gone2": 2}, ttl=0.05)
    await state.set("mixed", "live", 3)
    await state.set("mixed", "gone3", 4, ttl=0.05)
    await state.set_many("dead", {"x": 1, "y": 2}, ttl=0.05)
    await _past_expiry(raw, "motia:state:{mixed}:gone1", "motia:state:{mixed}:gone3", "motia:state:{dead}:y")

    # Redis dropped the strings; the index still holds their members until cleanup.
    assert await raw.zcard("motia:state:{mixed}") == 4
    assert await raw.zcard("motia:state:{dead}") == 2
    assert await state.keys("mixed") == ["live"]
    assert await state.list("mixed") == [3]
    assert [i.key for i in await state.items()] == ["live"]
    assert await state.keys("dead") == []
    assert await state.list_groups() == ["mixed"]
    assert await state.get_many("mixed", ["gone1", "live"]) == {"live": 3}
    assert (await state.set("mixed", "gone2", 5)).old_value is None
    assert await state.delete_many("mixed", ["gone1", "gone3"]) == 0

    assert await state.cleanup() == 2  # dead.x, dead.y (gone1/gone3 left with delete_many, gone2 was re-set)
    assert await raw.zcard("motia:state:{dead}") == 0
    assert await raw.smembers(REGISTRY) == {b"mixed"}
    assert sorted(await raw.zrange("motia:state:{mixed}", 0, -1)) == [b"gone2", b"live"]
    assert await state.cleanup() == 0
    assert await state.clear("mixed") == 2


async def test_cleanup_counts_expired_entries_and_prunes_empty_scopes(state: StateManager, raw: aioredis.Redis) -> None:
    for i in range(5):
        await state.set_many(f"scope{i}", {f"k{j}": j for j in range(3)}, ttl=0.05)
    await state.set("keep", "k", 1)
    await state.set("keep", "short", 1, ttl=0.05)
    await _past_expiry(raw, *(f"motia:state:{{scope{i}}}:k2" for i in range(5)), "motia:state:{keep}:short")
    assert await state.list_groups() == ["keep"]
    assert await raw.scard(REGISTRY) == 6  # pruning is cleanup's job
    assert await state.cleanup() == 16
    assert await raw.smembers(REGISTRY) == {b"keep"}
    assert await raw.zrange("motia:state:{keep}", 0, -1) == [b"k"]
    assert await state.cleanup() == 0


async def test_cleanup_from_many_tasks_counts_each_entry_once(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set_many("s", {f"k{i}": i for i in range(50)}, ttl=0.05)
    await _past_expiry(raw, "motia:state:{s}:k49")
    counts = await asyncio.gather(*(state.cleanup() for _ in range(5)))
    assert sum(counts) == 50


async def test_clear_counts_only_live_entries(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("s", "live", 1)
    await state.set("s", "gone", 1, ttl=0.05)
    await _past_expiry(raw, "motia:state:{s}:gone")
    assert await state.clear("s") == 1
    assert await raw.exists("motia:state:{s}") == 0
    assert await state.list_groups() == []


async def test_scope_refilled_after_pruning_stays_listed(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("s", "k", 1, ttl=0.05)
    await _past_expiry(raw, "motia:state:{s}:k")
    assert await state.cleanup() == 1
    assert await raw.smembers(REGISTRY) == set()
    await state.set("s", "k2", 2)
    assert await state.list_groups() == ["s"]
    assert await raw.smembers(REGISTRY) == {b"s"}
