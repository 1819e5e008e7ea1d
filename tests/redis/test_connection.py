"""URLs, errors with masked passwords, and recovery after the server drops the connections."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection

from motia_state import StateBackendError, StateManager
from motia_state.backends.redis import RedisAdapter
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis


def _spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pool_kwargs(adapter: RedisAdapter) -> dict[str, object]:
    pool = adapter._conn._client.connection_pool
    assert pool is not None
    return dict(pool.connection_kwargs)


def test_rediss_url_uses_tls_connections() -> None:
    adapter = RedisAdapter("rediss://alice:s3cret@cache.example.com:6380/3", pool_size=7, connect_timeout=2.5)
    pool = adapter._conn._client.connection_pool
    assert pool is not None
    assert pool.connection_class is SSLConnection
    kwargs = _pool_kwargs(adapter)
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.example.com", 6380, 3)
    assert (kwargs["username"], kwargs["password"]) == ("alice", "s3cret")
    assert kwargs["socket_connect_timeout"] == 2.5
    timeout = kwargs["socket_timeout"]
    assert isinstance(timeout, float) and 0 < timeout < 120  # bounded: a dead server cannot hang a worker
    assert pool.max_connections == 7
    assert "s3cret" not in repr(adapter)


def test_redis_url_with_password_only_and_db() -> None:
    adapter = RedisAdapter("redis://:p%40ss@127.0.0.1:6390/9")
    pool = adapter._conn._client.connection_pool
    assert pool is not None and pool.connection_class is Connection
    kwargs = _pool_kwargs(adapter)
    assert (kwargs["password"], kwargs["db"], kwargs.get("username")) == ("p@ss", 9, None)


def test_config_options_reach_the_adapter() -> None:
    state = StateManager.from_url("redis://127.0.0.1:6379/10", key_prefix="x:", pool_size=3, connect_timeout=1.5)
    adapter = state.adapter
    assert isinstance(adapter, RedisAdapter)
    assert adapter.key_prefix == "x:"
    assert adapter.entry_key("s", "k") == "x:{s}:k"
    assert adapter.index_key("s}") == "x:{s%7D}"
    assert _pool_kwargs(adapter)["socket_connect_timeout"] == 1.5


async def test_refused_connection_is_a_backend_error_with_masked_password() -> None:
    url = f"redis://admin:hunter2secret@127.0.0.1:{_spare_port()}/0"
    state = StateManager.from_url(url, connect_timeout=2)
    try:
        with pytest.raises(StateBackendError) as info:
            await asyncio.wait_for(state.get("s", "k"), 20)
        err = info.value
        assert err.backend == "redis"
        assert "hunter2secret" not in str(err) and "hunter2secret" not in err.url
        assert err.url == f"redis://admin:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
        assert "cannot reach Redis" in str(err)
        with pytest.raises(StateBackendError):
            await asyncio.wait_for(state.set("s", "k", 1), 20)
    finally:
        await state.close()


async def test_wrong_password_is_a_backend_error() -> None:
    host_port = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    state = StateManager.from_url(f"redis://nobody-here:wr0ngpass@{host_port}/12", connect_timeout=2)
    try:
        with pytest.raises(StateBackendError) as info:
            await asyncio.wait_for(state.get("s", "k"), 20)
        assert "wr0ngpass" not in str(info.value)
    finally:
        await state.close()


async def _kill_clients_of_db(raw: aioredis.Redis, db: int) -> int:
    me = await raw.client_id()
    killed = 0
    for client in await raw.client_list():
        if int(client["db"]) == db and int(client["id"]) != me:
            await raw.client_kill_filter(_id=str(client["id"]))
            killed += 1
    return killed


async def test_same_store_works_after_the_server_drops_its_connections(
    state: StateManager, raw: aioredis.Redis
) -> None:
    db = int(REDIS_URL.rsplit("/", 1)[1])
    # Open several pooled connections, as a busy worker would have.
    await asyncio.gather(*(state.set("s", f"k{i}", i) for i in range(8)))
    assert await _kill_clients_of_db(raw, db) >= 1
    await asyncio.sleep(0.05)  # let the event loop see the closed sockets, as after a real restart
    assert await state.get("s", "k1") == 1
    assert (await state.set("s", "k1", 10)).old_value == 1
    assert await _kill_clients_of_db(raw, db) >= 1
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*(state.set("s", f"k{i}", -i) for i in range(8)))
    assert [r.old_value for r in results] == [0, 10, 2, 3, 4, 5, 6, 7]
    assert await state.keys("s") == [f"k{i}" for i in range(8)]


async def test_close_is_idempotent_and_a_later_call_reconnects(state: StateManager) -> None:
    await state.set("s", "k", 1)
    await state.close()
    await state.close()
    assert await state.get("s", "k") == 1
    await state.close()


def test_connections_parse_with_hiredis() -> None:
    adapter = RedisAdapter("redis://127.0.0.1:6379/12")
    pool = adapter._conn._client.connection_pool
    assert pool is not None
    conn = pool.make_connection()  # type: ignore[no-untyped-call]
    assert type(conn._parser).__name__ == "_AsyncHiredisParser"
