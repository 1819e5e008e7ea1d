"""The Redis layout of SPEC §7, checked with a raw client: key names, JSON text, encoding, isolation."""

from __future__ import annotations

import json
import math

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from motia_state import StateManager
from tests.services import REDIS_URL

pytestmark = pytest.mark.redis

REGISTRY = b"motia:state:__scopes__"


async def test_entry_is_one_json_string_at_the_documented_key(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("trace-1", "booking", {"status": "pending", "seats": 2, "big": 2**70, "f": 1.0})
    assert await raw.type("motia:state:{trace-1}:booking") == b"string"
    text = await raw.get("motia:state:{trace-1}:booking")
    assert text is not None
    assert json.loads(text) == {"status": "pending", "seats": 2, "big": 2**70, "f": 1.0}
    assert b"1180591620717411303424" in text  # 2**70 written exactly, not as a float
    assert sorted(await raw.keys("*")) == [
        b"motia:state:__changes__",  # the change feed (SPEC §10): global stream, stream registry, counter
        b"motia:state:__changes_scopes__",
        b"motia:state:__revision__",
        b"motia:state:__scopes__",
        b"motia:state:{trace-1}",
        b"motia:state:{trace-1}#changes",  # the scope's change stream, in its slot
        b"motia:state:{trace-1}:booking",
    ]


async def test_index_is_a_sorted_set_of_keys_scored_by_expiry(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("s", "forever", 1)
    await state.set("s", "soon", 2, ttl=60)
    assert await raw.type("motia:state:{s}") == b"zset"
    pairs: list[tuple[bytes, float]] = await raw.zrange("motia:state:{s}", 0, -1, withscores=True)  # type: ignore[assignment]
    scores = dict(pairs)
    assert math.isinf(scores[b"forever"])
    redis_expiry_ms = await raw.pexpiretime("motia:state:{s}:soon")
    assert abs(scores[b"soon"] - redis_expiry_ms) <= 5
    assert await raw.smembers(REGISTRY) == {b"s"}


async def test_value_written_with_redis_cli_shape_reads_back(state: StateManager, raw: aioredis.Redis) -> None:
    # Someone inspecting or patching a value by hand sees and writes plain JSON text.
    await state.set("trace-2", "booking", {"status": "pending"})
    await raw.set("motia:state:{trace-2}:booking", '{"status":"confirmed","empty":{},"list":[]}', keepttl=True)
    assert await state.get("trace-2", "booking") == {"status": "confirmed", "empty": {}, "list": []}


@pytest.mark.parametrize(
    ("scope", "tag"),
    [
        ("a}b", "a%7Db"),
        ("100%", "100%25"),
        ("%7D", "%257D"),
        ("}}%", "%7D%7D%25"),
        ("x{y", "x{y"),
        ("a:b *?[c] \\ é 🙂", "a:b *?[c] \\ é 🙂"),
    ],
)
async def test_scope_percent_encoding(state: StateManager, raw: aioredis.Redis, scope: str, tag: str) -> None:
    await state.set(scope, "k:1", [scope])
    key = f"motia:state:{{{tag}}}:k:1".encode()
    assert json.loads(await raw.get(key) or b"null") == [scope]
    assert await raw.exists(f"motia:state:{{{tag}}}") == 1
    assert await raw.smembers(REGISTRY) == {scope.encode()}
    assert await state.keys(scope) == ["k:1"]
    assert await state.list_groups() == [scope]
    # Every key of the scope hashes to one Cluster slot.
    assert key_slot(key) == key_slot(f"motia:state:{{{tag}}}".encode()) == key_slot(f"{{{tag}}}".encode())


async def test_encoded_scopes_never_collide(state: StateManager) -> None:
    # Without encoding, scope "a}:b" key "c" and scope "a" key "b}:c"... would share a Redis key.
    pairs = [("a}:b", "c"), ("a", "b}:c"), ("a%7D", "x"), ("a}", "x"), ("a%", "x"), ("a%25", "x")]
    for i, (scope, key) in enumerate(pairs):
        await state.set(scope, key, i)
    for i, (scope, key) in enumerate(pairs):
        assert await state.get(scope, key) == i
    assert await state.list_groups() == sorted({s for s, _ in pairs})


async def test_colons_in_scope_and_key_stay_apart(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("a:b", "c", "scope a:b")
    await state.set("a", "b:c", "scope a")
    assert await raw.get("motia:state:{a:b}:c") == b'"scope a:b"'
    assert await raw.get("motia:state:{a}:b:c") == b'"scope a"'
    assert await state.keys("a:b") == ["c"]
    assert await state.keys("a") == ["b:c"]
    assert await state.clear("a") == 1
    assert await state.get("a:b", "c") == "scope a:b"


@pytest.mark.parametrize("pattern", ["*", "a*", "a?", "[ab]", "a[bx]", "\\*", "?"])
async def test_glob_characters_in_a_scope_never_widen_a_match(state: StateManager, pattern: str) -> None:
    others = ["a", "ab", "ax", "b", "a*x", "abc", "[ab]x"]
    for scope in others:
        await state.set(scope, "k", scope)
    await state.set(pattern, "k", "mine")
    await state.set(pattern, "k2", "mine too")
    assert await state.keys(pattern) == ["k", "k2"]
    assert await state.list(pattern) == ["mine", "mine too"]
    assert [i.scope for i in await state.items(pattern)] == [pattern, pattern]
    assert await state.clear(pattern) == 2
    assert await state.keys(pattern) == []
    for scope in others:
        assert await state.get(scope, "k") == scope
    assert await state.list_groups() == sorted(others)


async def test_user_and_user2_are_separate(state: StateManager) -> None:
    await state.set("user", "k", 1)
    await state.set("user2", "k", 2)
    assert await state.clear("user") == 1
    assert await state.get("user2", "k") == 2


async def test_key_prefix_option(raw: aioredis.Redis) -> None:
    mine = StateManager.from_url(REDIS_URL, key_prefix="app1:")
    default = StateManager.from_url(REDIS_URL)
    try:
        await mine.set("s", "k", {"who": "app1"})
        await default.set("s", "k", {"who": "default"})
        assert await raw.get("app1:{s}:k") == b'{"who":"app1"}'
        assert await raw.get("motia:state:{s}:k") == b'{"who":"default"}'
        assert await raw.smembers("app1:__scopes__") == {b"s"}
        assert await mine.clear("s") == 1
        assert await default.get("s", "k") == {"who": "default"}
        assert await mine.list_groups() == []
        assert await default.list_groups() == ["s"]
    finally:
        await mine.close()
        await default.close()


async def test_operations_touch_only_their_scope_index(state: StateManager, raw: aioredis.Redis) -> None:
    await state.set_many("s", {"a": 1, "b": 2, "c": 3})
    await state.set("t", "a", 1)
    assert await raw.zrange("motia:state:{s}", 0, -1) == [b"a", b"b", b"c"]
    await state.delete("s", "a")
    assert await raw.zrange("motia:state:{s}", 0, -1) == [b"b", b"c"]
    assert await state.delete_many("s", ["b", "zz"]) == 1
    assert await raw.zrange("motia:state:{s}", 0, -1) == [b"c"]
    assert await state.clear("s") == 1
    assert await raw.exists("motia:state:{s}", "motia:state:{s}:c") == 0
    assert await raw.zrange("motia:state:{t}", 0, -1) == [b"a"]
    await state.update("s", "n", [{"type": "increment", "path": "x", "by": 1}])
    assert await raw.zrange("motia:state:{s}", 0, -1) == [b"n"]
    assert await raw.smembers(REGISTRY) == {b"s", b"t"}
