"""Fixtures for the Redis adapter's own tests: a store and a raw client on the test db, emptied first."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from motia_state import StateManager
from motia_state.backends.redis import RedisAdapter
from tests.services import REDIS_URL, require


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client on the (emptied) test db, bytes in and out."""
    require("redis")
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def state(raw: aioredis.Redis) -> AsyncIterator[StateManager]:
    """A store on the emptied test db with the default key prefix."""
    store = StateManager.from_url(REDIS_URL)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def adapter(state: StateManager) -> RedisAdapter:
    assert isinstance(state.adapter, RedisAdapter)
    return state.adapter
