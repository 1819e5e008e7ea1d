"""The ``motia`` Redis layout (SPEC §7): exactly the keys and JSON text of Motia's own Redis adapter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from motia_state import StateConfigError, StateManager
from motia_state.backends.redis.motia import MotiaLayoutAdapter
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.fixture
async def motia(raw: aioredis.Redis) -> AsyncIterator[StateManager]:
    store = StateManager.from_url(REDIS_URL + "?layout=motia")
    try:
        yield store
    finally:
        await store.close()


async def _all_keys(raw: aioredis.Redis) -> dict[bytes, bytes]:
    return {k: await raw.type(k) for k in await raw.keys("*")}


async def test_entries_are_plain_strings_at_prefix_scope_key_and_nothing_else(
    motia: StateManager, raw: aioredis.Redis
) -> None:
    await motia.set("trace-1", "booking", {"seats": 2, "price": 1.5})
    await motia.set("trace-1", "payment.status", "pending", ttl=60)
    await motia.set_many("trace-2", {"a": [1, {}], "b": None})
    await motia.update("trace-1", "booking", [{"type": "increment", "path": "seats"}])
    await motia.delete("trace-2", "b")
    assert await _all_keys(raw) == {
        b"motia:state:trace-1:booking": b"string",
        b"motia:state:trace-1:payment.status": b"string",
        b"motia:state:trace-2:a": b"string",
    }
    assert json.loads(await raw.get("motia:state:trace-1:booking")) == {"seats": 3, "price": 1.5}
    assert json.loads(await raw.get("motia:state:trace-1:payment.status")) == "pending"
    assert 59_000 < await raw.pttl("motia:state:trace-1:payment.status") <= 60_000
    assert await motia.list_groups() == ["trace-1", "trace-2"]
    assert await motia.cleanup() == 0


async def test_values_written_by_another_client_are_read(motia: StateManager, raw: aioredis.Redis) -> None:
    # What Motia's Node adapter writes: JSON.stringify's text, a TTL by SETEX.
    await raw.set("motia:state:t:order", '{"id":7,"total":12.5,"tags":["a"],"ok":true}')
    await raw.set("motia:state:t:hold", '"A1"', ex=30)
    assert await motia.get("t", "order") == {"id": 7, "total": 12.5, "tags": ["a"], "ok": True}
    assert await motia.keys("t") == ["hold", "order"]
    assert await motia.list("t") == ["A1", {"id": 7, "total": 12.5, "tags": ["a"], "ok": True}]
    left = await motia.ttl("t", "hold")
    assert left is not None and 29 < left <= 30
    items = await motia.items("t", filters=[{"path": "total", "op": "gt", "value": 10}])
    assert [(i.key, i.value["id"]) for i in items] == [("order", 7)]


@pytest.mark.parametrize("scope", ["a*", "a?", "a[b]", "a[!x]", "a\\", "a]"])
async def test_glob_characters_in_a_scope_never_widen_a_match(motia: StateManager, scope: str) -> None:
    await motia.set("ab", "k", 1)
    await motia.set("a", "k", 2)
    await motia.set(scope, "k", 3)
    assert await motia.keys(scope) == ["k"]
    assert await motia.list(scope) == [3]
    assert await motia.clear(scope) == 1
    assert await motia.get("ab", "k") == 1 and await motia.get("a", "k") == 2
    assert sorted(await motia.list_groups()) == ["a", "ab"]


async def test_a_colon_in_a_scope_is_percent_encoded_so_motia_reads_the_trace_id_whole(
    motia: StateManager, raw: aioredis.Redis
) -> None:
    await motia.set("a:b", "c", 1)
    await motia.set("a", "b:c", 2)
    await motia.set("100%", "k", 3)
    await motia.set("x%3Ay", "k", 4)  # reads like an escape: its '%' is encoded
    assert set(await raw.keys("*")) == {
        b"motia:state:a%3Ab:c",
        b"motia:state:a:b:c",
        b"motia:state:100%:k",
        b"motia:state:x%253Ay:k",
    }
    assert await motia.get("a:b", "c") == 1 and await motia.get("a", "b:c") == 2
    assert await motia.get("100%", "k") == 3 and await motia.get("x%3Ay", "k") == 4
    assert await motia.keys("a") == ["b:c"]
    assert await motia.list_groups() == ["100%", "a", "a:b", "x%3Ay"]


async def test_a_trace_id_with_a_percent_written_by_motia_is_read_back(
    motia: StateManager, raw: aioredis.Redis
) -> None:
    await raw.set("motia:state:100%:k", "1")
    assert await motia.list_groups() == ["100%"]
    assert await motia.get("100%", "k") == 1
    assert [i.key for i in await motia.items()] == ["k"]


async def test_layout_from_the_option_and_from_config(raw: aioredis.Redis, tmp_path: Path) -> None:
    by_option = StateManager.from_url(REDIS_URL, layout="motia", key_prefix="app:")
    assert isinstance(by_option.adapter, MotiaLayoutAdapter) and by_option.adapter.key_prefix == "app:"
    await by_option.set("t", "k", 1)
    assert await raw.get("app:t:k") == b"1"
    await by_option.close()
    (tmp_path / "config.yml").write_text(f"state:\n  url: {REDIS_URL}\n  layout: motia\n")
    from_config = StateManager.from_config(tmp_path / "config.yml")
    assert isinstance(from_config.adapter, MotiaLayoutAdapter)
    with pytest.raises(StateConfigError, match="layout"):
        StateManager.from_url(REDIS_URL + "?layout=flat")
    with pytest.raises(StateConfigError, match="layout"):
        StateManager.from_url("postgresql://h/db", layout="motia")


async def test_a_tagged_store_on_the_same_prefix_shows_its_index_keys(raw: aioredis.Redis) -> None:
    """Why the README warns: the tagged layout's index and registry look like trace ids to a Motia app."""
    tagged = StateManager.from_url(REDIS_URL)
    motia = StateManager.from_url(REDIS_URL + "?layout=motia")
    try:
        await tagged.set("trace-456", "k", 1)
        assert await motia.get("trace-456", "k") is None  # the two layouts do not share entries
        # The entry's tag reads as a trace id "{trace-456}" (Motia's own traceIds() also lists the index keys).
        assert await motia.list_groups() == ["{trace-456}"]
    finally:
        await tagged.close()
        await motia.close()


async def test_watch_revision_and_triggers_refuse_with_a_config_error_and_nothing_is_written(
    motia: StateManager, raw: aioredis.Redis
) -> None:
    await motia.set("trace-1", "booking", {"status": "pending"})
    with pytest.raises(StateConfigError, match="layout: tagged"):
        motia.watch("trace-1")
    with pytest.raises(StateConfigError, match="layout 'motia'"):
        await motia.revision()
    with pytest.raises(StateConfigError, match="layout 'motia'"):
        motia.on_change("t")
    assert list(await _all_keys(raw)) == [b"motia:state:trace-1:booking"]
