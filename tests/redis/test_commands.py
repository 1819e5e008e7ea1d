"""Which Redis commands the adapter sends: never KEYS, one round trip for the batch operations."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from motia_state import StateBackendError, StateManager, UpdateOpError, ops
from motia_state.backends.redis import RedisAdapter, scripts
from motia_state.backends.redis import connection as redis_connection

pytestmark = pytest.mark.redis


async def _calls(raw: aioredis.Redis, command: str) -> int:
    stats = await raw.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def _every_operation(state: StateManager) -> None:
    await state.set("s*", "a", {"n": 1}, ttl=60)
    await state.set("s*", "b", [1, 2])
    await state.get("s*", "a")
    await state.update("s*", "a", [ops.increment("n")])
    await state.update("s*", "new", [ops.set_("x", 1)])
    await state.ttl("s*", "a")
    await state.keys("s*")
    await state.list("s*")
    await state.items("s*", filters=[{"path": "n", "op": "gt", "value": 0}])
    await state.items(limit=5)
    await state.list_groups()
    await state.get_many("s*", ["a", "b", "zz"])
    await state.set_many("s?", {"a": 1, "b": 2}, ttl=0.01)
    await state.delete_many("s*", ["b", "zz"])
    await state.delete("s*", "a")
    await state.cleanup()
    await state.clear("s*")
    await state.clear("s?")


async def test_no_operation_uses_keys(state: StateManager, raw: aioredis.Redis) -> None:
    # The server is shared with other test runs, so compare counts instead of resetting the stats.
    keys_before = await _calls(raw, "keys")
    scan_before = await _calls(raw, "scan")
    calls_before = await _calls(raw, "evalsha")
    await _every_operation(state)
    assert await _calls(raw, "evalsha") > calls_before  # the stats do move for commands we send
    assert await _calls(raw, "keys") == keys_before
    assert await _calls(raw, "scan") == scan_before


async def test_batches_are_one_round_trip(adapter: RedisAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    trips: list[int] = []
    original = redis_connection.Connection._execute

    async def counting(self: redis_connection.Connection, client: Any, commands: list[tuple[object, ...]]) -> list[Any]:
        trips.append(len(commands))
        return await original(self, client, commands)

    await adapter.connect()
    await adapter.set_entry("warm", "k", 1, None)  # loads the scripts if the server lacks them
    monkeypatch.setattr(redis_connection.Connection, "_execute", counting)
    await adapter.set_many("s", {f"k{i}": i for i in range(1000)}, None)
    assert len(trips) == 1
    assert await adapter.get_many("s", [f"k{i}" for i in range(1000)]) == {f"k{i}": i for i in range(1000)}
    assert len(trips) == 2
    assert await adapter.delete_many("s", [f"k{i}" for i in range(500)]) == 500
    assert len(trips) == 3
    assert len(await adapter.values("s")) == 500
    assert await adapter.set_entry("s", "k999", "x", 5.0) == 999
    assert await adapter.clear("s") == 500
    assert len(trips) == 6


async def test_scripts_load_on_noscript(state: StateManager, monkeypatch: pytest.MonkeyPatch) -> None:
    # SCRIPT FLUSH would hit everyone sharing the server; a script text it has never seen behaves the same.
    await state.set("s", "k", 1)
    fresh = scripts.Script(scripts.SET.text + f"-- {uuid.uuid4()}\n")
    monkeypatch.setattr(scripts, "SET", fresh)
    monkeypatch.setattr(redis_connection, "SCRIPTS", (*scripts.SCRIPTS, fresh))
    assert (await state.set("s", "k", 2)).old_value == 1
    assert (await state.set("s", "k", 3)).old_value == 2
    assert await state.list("s") == [3]
    assert await state.list_groups() == ["s"]


async def test_set_many_is_all_or_nothing(state: StateManager, raw: aioredis.Redis) -> None:
    await raw.set("motia:state:{s}", "not an index")  # a foreign value where the scope's index belongs
    with pytest.raises(StateBackendError) as info:
        await state.set_many("s", {"a": 1, "b": 2})
    assert "another type" in str(info.value)
    assert await raw.exists("motia:state:{s}:a", "motia:state:{s}:b") == 0
    await raw.delete("motia:state:{s}")
    await state.set_many("s", {"a": 1, "b": 2})
    assert await state.get_many("s", ["a", "b"]) == {"a": 1, "b": 2}


async def test_failed_update_writes_nothing(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("s", "k", {"n": "text"}, ttl=60)
    before = await raw.get("motia:state:{s}:k")
    with pytest.raises(UpdateOpError):
        await state.update("s", "k", [ops.increment("m"), ops.increment("n")])
    assert await raw.get("motia:state:{s}:k") == before
    assert await raw.pttl("motia:state:{s}:k") > 50_000
