"""Issue 12: Motia's own RedisStateAdapter and motia-state's ``layout=motia`` share one Redis database.

Each test empties its own db (``MOTIA_STATE_TEST_INTEROP_REDIS_URL``, default db 14), writes with one side and
reads with the other: Node runs ``@motiadev/adapter-redis-state`` (tests/interop/node.py), Python runs
``StateManager.from_url("redis://…?layout=motia")``. In that layout an entry is the string
``<prefix><scope>:<key>`` holding JSON text, with the native Redis expiry; nothing else is under the prefix.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import redis.asyncio as aioredis

from motia_state import StateManager
from motia_state.testing.helpers import assert_same
from tests.interop.node import Motia
from tests.interop.script import run_script
from tests.services import create_private_pg_database, drop_private_pg_database, pg_url_of, require

pytestmark = pytest.mark.redis

REDIS = os.environ.get("MOTIA_STATE_TEST_INTEROP_REDIS_URL", "redis://127.0.0.1:6379/14")
PREFIX = "motia:state:"
# Private Postgres databases of the copy test: created and dropped here, never anyone else's.
PG_PREFIX = "motia_state_i_"


def motia_url(**options: str) -> str:
    """The interop db opened in Motia's key layout (``layout=motia`` plus ``options``)."""
    query = urlencode({"layout": "motia", **options})
    return f"{REDIS}{'&' if urlsplit(REDIS).query else '?'}{query}"


def done(path: str = "status") -> dict[str, Any]:
    return {"path": path, "op": "eq", "value": "done"}


# What Node writes in the first tests: every JSON kind, nested, unicode, keys with ':' and '.'.
# (No integral floats: JSON.stringify writes 2.0 as "2", which reads back as an int; see test_numbers.)
NODE_WRITES: dict[str, dict[str, Any]] = {
    "trace-a": {
        "booking": {"status": "done", "seats": 2, "customer": {"name": "Ada", "tier": "gold"}, "tags": ["vip", "late"]},
        "payment": {"status": "pending", "amount": 12.5, "paid": False},
        "note": '名前 ✓ 🚀 "quoted" \\ back\nline',
        "count": 42,
        "ratio": 0.25,
        "flag": True,
        "nothing": None,
        "list": [1, "two", [3], {"four": 4}, None, False],
        "step:1.done": {"status": "done", "at": "2025-01-01T00:00:00Z"},
    },
    "trace-b": {
        "booking": {"status": "done", "seats": 4, "customer": {"name": "Grace", "tier": "silver"}},
        "empty": {},
        "empty_list": [],
        "blank": "",
        "negative": -7,
    },
}


def node_sets(writes: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [["set", scope, key, value] for scope, entries in writes.items() for key, value in entries.items()]


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client (text replies) on the interop db, emptied first."""
    require("redis")
    client = aioredis.from_url(REDIS, decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def state(raw: aioredis.Redis) -> AsyncIterator[StateManager]:
    """motia-state on the emptied interop db, Motia's layout and default prefix."""
    store = StateManager.from_url(motia_url())
    try:
        yield store
    finally:
        await store.close()


async def raw_entries(raw: aioredis.Redis, prefix: str = PREFIX) -> dict[str, tuple[str, str]]:
    """Every Redis key under ``prefix``: its type and (for strings) its text."""
    out: dict[str, tuple[str, str]] = {}
    async for name in raw.scan_iter(match=prefix + "*", count=500):
        kind = await raw.type(name)
        text = await raw.get(name) if kind == "string" else ""
        out[str(name)] = (str(kind), str(text or ""))
    return out


# --- Node writes, motia-state reads ------------------------------------------------------------------------------


async def test_node_writes_motia_state_reads(motia: Motia, state: StateManager, raw: aioredis.Redis) -> None:
    await motia.redis(REDIS, *node_sets(NODE_WRITES))
    # Motia's layout, as Node wrote it: the only keys are <prefix><trace>:<key> strings
    assert set(await raw_entries(raw)) == {f"{PREFIX}{s}:{k}" for s, e in NODE_WRITES.items() for k in e}

    for scope, entries in NODE_WRITES.items():
        for key, value in entries.items():
            assert_same(await state.get(scope, key), value, f"{scope}/{key}")
            assert await state.ttl(scope, key) is None
        assert await state.keys(scope) == sorted(entries)
        assert_same(await state.list(scope), [entries[k] for k in sorted(entries)], scope)
    assert await state.list_groups() == ["trace-a", "trace-b"]
    assert await state.get("trace-a", "absent") is None
    assert await state.get("trace-c", "booking") is None

    got = await state.get_many("trace-a", ["booking", "nothing", "absent", "step:1.done"])
    a = NODE_WRITES["trace-a"]
    assert_same(got, {"booking": a["booking"], "nothing": None, "step:1.done": a["step:1.done"]})

    everything = await state.items()
    assert [(i.scope, i.key) for i in everything] == [
        (s, k) for s in sorted(NODE_WRITES) for k in sorted(NODE_WRITES[s])
    ]
    for item in everything:
        assert_same(item.value, NODE_WRITES[item.scope][item.key], f"{item.scope}/{item.key}")
        assert item.expires_at is None

    finished = await state.items(filters=[done()])
    assert [(i.scope, i.key) for i in finished] == [
        ("trace-a", "booking"),
        ("trace-a", "step:1.done"),
        ("trace-b", "booking"),
    ]
    assert_same(finished[2].value, NODE_WRITES["trace-b"]["booking"])
    in_a = await state.items("trace-a", filters=[done()])
    assert [i.key for i in in_a] == ["booking", "step:1.done"]
    gold = await state.items(filters=[{"path": ["customer", "tier"], "op": "eq", "value": "gold"}])
    assert [(i.scope, i.key) for i in gold] == [("trace-a", "booking")]
    big = await state.items(filters=[{"path": "seats", "op": "gt", "value": 2}, done()])
    assert [(i.scope, i.key, i.value["seats"]) for i in big] == [("trace-b", "booking", 4)]
    strings = await state.items("trace-a", filters=[{"path": [], "op": "startsWith", "value": "名前"}])
    assert [i.key for i in strings] == ["note"]

    # Motia's own items() filter agrees with ours on which entries are done
    [node_done] = await motia.redis(
        REDIS, ["items", {"filter": [{"valueKey": "status", "operation": "eq", "value": "done"}]}]
    )
    assert sorted((i["groupId"], i["key"]) for i in node_done) == [(i.scope, i.key) for i in finished]


async def test_node_trace_id_is_read_up_to_the_first_colon_as_motia_reads_it(motia: Motia, state: StateManager) -> None:
    # Motia itself splits <prefix>a:b:k at the first ':' (traceIds -> "a", keys("a") -> "b:k"); so do we.
    results = await motia.redis(REDIS, ["set", "a:b", "k", 1], ["traceIds"], ["keys", "a"], ["get", "a", "b:k"])
    assert results[1:] == [["a"], ["b:k"], 1]
    assert await state.list_groups() == ["a"]
    assert await state.keys("a") == ["b:k"]
    assert_same(await state.get("a", "b:k"), 1)


# --- motia-state writes, Node reads ------------------------------------------------------------------------------


async def test_motia_state_writes_node_reads(motia: Motia, state: StateManager, raw: aioredis.Redis) -> None:
    await state.set("order-1", "booking", {"status": "new", "seats": 1, "customer": {"name": "Ada"}})
    ops: list[dict[str, Any]] = [
        {"type": "set", "path": "status", "value": "paid"},
        {"type": "increment", "path": "seats", "by": 2},
        {"type": "append", "path": "log", "value": "paid by card"},
        {"type": "merge", "path": "customer", "value": {"tier": "gold"}},
        {"type": "remove", "path": ["customer", "name"]},
    ]
    await state.update("order-1", "booking", ops)
    await state.update("order-1", "visits", [{"type": "increment", "path": "count", "by": 3}])  # a new entry
    many = {"a": 1, "b": [True, None, "x"], "c": "text ✓", "d": 2.5, "e": None, "f": {"deep": {"er": [{}]}}}
    await state.set_many("order-2", many)
    await state.set("order-2", "hold", {"seat": "A1"}, ttl=60)
    await state.update("order-2", "hold", [{"type": "set", "path": "until", "value": "noon"}])  # keeps the TTL

    booking = {"status": "paid", "seats": 3, "customer": {"tier": "gold"}, "log": ["paid by card"]}
    order_2 = {**many, "hold": {"seat": "A1", "until": "noon"}}
    results = await motia.redis(
        REDIS,
        ["get", "order-1", "booking"],
        ["get", "order-1", "visits"],
        ["get", "order-1", "absent"],
        ["getGroup", "order-2"],
        ["keys", "order-2"],
        ["traceIds"],
        ["items", {"groupId": "order-2"}],
        ["getGroup", "order-3"],
    )
    got_booking, visits, absent, group, keys, trace_ids, items, nothing = results
    assert_same(got_booking, booking)
    assert_same(visits, {"count": 3})
    assert absent is None
    assert sorted(map(json.dumps, group)) == sorted(json.dumps(v) for v in order_2.values())
    assert sorted(keys) == sorted(order_2)
    # exactly our scopes: no registry, index or hash-tagged names of the default layout
    assert sorted(trace_ids) == ["order-1", "order-2"]
    kinds = {i["key"]: i["type"] for i in items}
    assert kinds == {
        "a": "number",
        "b": "array",
        "c": "string",
        "d": "number",
        "e": "null",
        "f": "object",
        "hold": "object",
    }
    for item in items:
        assert item["groupId"] == "order-2"
        assert_same(item["value"], order_2[item["key"]], item["key"])
    assert nothing == []

    # Motia's layout, as we wrote it: strings of JSON text, the TTL native (Node cannot read it; redis-py can)
    entries = await raw_entries(raw)
    want = {f"{PREFIX}order-1:booking", f"{PREFIX}order-1:visits"} | {f"{PREFIX}order-2:{k}" for k in order_2}
    assert set(entries) == want
    assert {kind for kind, _ in entries.values()} == {"string"}
    assert json.loads(entries[f"{PREFIX}order-2:f"][1]) == many["f"]
    hold_ms = await raw.pttl(f"{PREFIX}order-2:hold")
    assert 50_000 < hold_ms <= 60_000
    for name in want - {f"{PREFIX}order-2:hold"}:
        assert await raw.pttl(name) == -1, name


async def test_a_scope_with_a_colon_is_percent_encoded_and_a_percent_alone_is_not(
    motia: Motia, state: StateManager
) -> None:
    await state.set("order:42", "k", 1)
    await state.set("50%", "k", 2)
    await state.set("order", "k", 3)
    results = await motia.redis(
        REDIS,
        ["traceIds"],
        ["get", "order%3A42", "k"],
        ["get", "50%", "k"],
        ["getGroup", "order"],
        ["set", "order%3A42", "from-node", "n"],
    )
    assert sorted(results[0]) == ["50%", "order", "order%3A42"]
    assert results[1:4] == [1, 2, [3]]  # Motia's group "order" is not polluted by the scope "order:42"
    assert await state.get("order:42", "from-node") == "n"
    assert await state.list_groups() == ["50%", "order", "order:42"]


# --- deletes and clears ------------------------------------------------------------------------------------------


async def test_node_deletes_and_clears_are_seen(motia: Motia, state: StateManager, raw: aioredis.Redis) -> None:
    await motia.redis(
        REDIS,
        ["set", "t1", "k1", {"v": 1}],
        ["set", "t1", "k2", [2]],
        ["set", "t1", "k3", "three"],
        ["set", "t2", "x", True],
        ["set", "t2", "y", None],
    )
    assert await state.list_groups() == ["t1", "t2"]
    assert await state.keys("t2") == ["x", "y"]

    deleted, _ = await motia.redis(REDIS, ["delete", "t1", "k1"], ["clear", "t2"])
    assert_same(deleted, {"v": 1})
    assert await state.get("t1", "k1") is None
    assert await state.get_many("t1", ["k1", "k2", "k3"]) == {"k2": [2], "k3": "three"}
    assert await state.keys("t1") == ["k2", "k3"]
    assert await state.get_many("t2", ["x", "y"]) == {}
    assert await state.keys("t2") == []
    assert await state.list("t2") == []
    assert await state.items("t2") == []
    assert await state.list_groups() == ["t1"]

    await motia.redis(REDIS, ["clear", "t1"])
    assert await state.list_groups() == []
    assert await state.items() == []
    assert await state.get("t1", "k2") is None
    assert await raw_entries(raw) == {}


async def test_motia_state_deletes_and_clears_are_seen(motia: Motia, state: StateManager, raw: aioredis.Redis) -> None:
    await state.set_many("t1", {"k1": {"v": 1}, "k2": [2], "k3": "three", "k4": 4})
    await state.set_many("t2", {"x": True, "y": None}, ttl=600)
    before = await motia.redis(REDIS, ["traceIds"], ["keys", "t2"])
    assert [sorted(before[0]), sorted(before[1])] == [["t1", "t2"], ["x", "y"]]

    assert_same(await state.delete("t1", "k1"), {"v": 1})
    assert await state.delete_many("t1", ["k4", "absent"]) == 1
    assert await state.clear("t2") == 2
    results = await motia.redis(
        REDIS,
        ["get", "t1", "k1"],
        ["get", "t1", "k4"],
        ["keys", "t1"],
        ["getGroup", "t2"],
        ["keys", "t2"],
        ["get", "t2", "x"],
        ["traceIds"],
    )
    k1, k4, keys_1, group_2, keys_2, x, trace_ids = results
    assert (k1, k4, sorted(keys_1), group_2, keys_2, x, trace_ids) == (None, None, ["k2", "k3"], [], [], None, ["t1"])

    assert await state.clear("t1") == 2
    assert await motia.redis(REDIS, ["traceIds"], ["getGroup", "t1"], ["items", {}]) == [[], [], []]
    assert await raw_entries(raw) == {}


# --- expiry --------------------------------------------------------------------------------------------------------


async def test_node_ttl_option_is_seen_by_motia_state(motia: Motia, state: StateManager, raw: aioredis.Redis) -> None:
    await motia.redis(REDIS, ["set", "t", "hold", {"seat": "B2"}], ["set", "t", "n", 1], ttl=90)
    await motia.redis(REDIS, ["set", "t", "forever", "x"])
    assert 85 < await raw.ttl(f"{PREFIX}t:hold") <= 90  # Motia's SETEX

    left = await state.ttl("t", "hold")
    assert left is not None and 80 < left <= 90
    assert await state.ttl("t", "forever") is None
    [item] = await state.items("t", filters=[{"path": "seat", "op": "eq", "value": "B2"}])
    assert item.expires_at is not None
    assert 80 < (item.expires_at - datetime.now(UTC)).total_seconds() <= 90
    assert_same(item.value, {"seat": "B2"})

    await state.update("t", "n", [{"type": "increment", "path": [], "by": 1}])  # an update keeps the expiry
    left = await state.ttl("t", "n")
    assert left is not None and 80 < left <= 90
    assert await motia.redis(REDIS, ["get", "t", "n"]) == [2]

    await motia.redis(REDIS, ["set", "t", "soon", "gone"], ttl=1)
    assert await state.get("t", "soon") == "gone"
    await asyncio.sleep(1.2)
    assert await state.get("t", "soon") is None
    assert await state.keys("t") == ["forever", "hold", "n"]


# --- key prefix ----------------------------------------------------------------------------------------------------


async def test_key_prefix_is_shared(motia: Motia, raw: aioredis.Redis) -> None:
    async with StateManager.from_url(motia_url(key_prefix="shop:")) as shop:
        await shop.set("t", "mine", {"from": "python"})
        await motia.redis(REDIS, ["set", "t", "yours", {"from": "node"}], key_prefix="shop:")
        assert await shop.get("t", "yours") == {"from": "node"}
        results = await motia.redis(REDIS, ["get", "t", "mine"], ["traceIds"], key_prefix="shop:")
        assert results == [{"from": "python"}, ["t"]]
        # an adapter on the default prefix sees none of it
        assert await motia.redis(REDIS, ["traceIds"], ["get", "t", "mine"]) == [[], None]
        assert set(await raw_entries(raw, "")) == {"shop:t:mine", "shop:t:yours"}


# --- numbers: what JSON.stringify writes is not what Python writes -------------------------------------------------


async def test_numbers_across_the_two_json_encoders(motia: Motia, state: StateManager, raw: aioredis.Redis) -> None:
    # motia-state keeps an int exact and a float a float; Node parses every number into a double.
    await state.set("n", "py", {"big": 12345678901234567890123, "one": 1.0, "e16": 1e16, "tenth": 0.1})
    # (1e16 written positionally with a fraction, so that it stays a float even through Postgres's jsonb)
    text = await raw.get(f"{PREFIX}n:py")
    assert text == '{"big":12345678901234567890123,"one":1.0,"e16":10000000000000000.0,"tenth":0.1}'
    [seen] = await motia.redis(REDIS, ["get", "n", "py"])
    # Node's view, re-printed by JSON.stringify: the big int rounded, the integral floats now ints
    assert_same(seen, {"big": 1.2345678901234568e22, "one": 1, "e16": 10000000000000000, "tenth": 0.1})

    # Values Node writes (JSON.parse'd doubles, JSON.stringify'd) and how motia-state reads them back
    await motia.redis(REDIS, ["set", "n", "js", {"big": 12345678901234567890123, "two": 2.0, "e16": 1e16, "f": 1.5}])
    assert await raw.get(f"{PREFIX}n:js") == '{"big":1.2345678901234568e+22,"two":2,"e16":10000000000000000,"f":1.5}'
    assert_same(
        await state.get("n", "js"), {"big": 1.2345678901234568e22, "two": 2, "e16": 10000000000000000, "f": 1.5}
    )


# --- the CLI copies a Node-written store ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def dest_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty store to copy into: a SQLite file, or a private Postgres database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'copy.db'}"
        return
    require("postgres")
    name = await create_private_pg_database(PG_PREFIX)
    try:
        yield pg_url_of(name)
    finally:
        await drop_private_pg_database(name, PG_PREFIX)


async def test_cli_copies_a_node_written_store(
    motia: Motia, state: StateManager, dest_url: str, tmp_path: Path
) -> None:
    await motia.redis(REDIS, *node_sets(NODE_WRITES))
    timed = {"hold": {"seat": "C3"}, "token": "abc", "tries": 3}
    await motia.redis(REDIS, *node_sets({"trace-t": timed}), ttl=3600)
    await motia.redis(REDIS, ["set", "trace-t", "keep", [1, 2]])
    expected = {**NODE_WRITES, "trace-t": {**timed, "keep": [1, 2]}}
    source_ttl = {k: await state.ttl("trace-t", k) for k in expected["trace-t"]}

    started = time.time()
    summary = await asyncio.to_thread(run_script, "copy", "--from", motia_url(), "--to", dest_url, cwd=tmp_path)
    entries = sum(len(e) for e in expected.values())
    counts = {k: summary[k] for k in ("entries", "scopes", "skipped_expired")}
    assert counts == {"entries": entries, "scopes": 3, "skipped_expired": 0}

    async with StateManager.from_url(dest_url) as dest:
        assert await dest.list_groups() == sorted(expected)
        items = await dest.items()
        assert [(i.scope, i.key) for i in items] == [(s, k) for s in sorted(expected) for k in sorted(expected[s])]
        for item in items:
            assert_same(item.value, expected[item.scope][item.key], f"{item.scope}/{item.key}")
            before = source_ttl.get(item.key) if item.scope == "trace-t" else None
            after = await dest.ttl(item.scope, item.key)
            if before is None:
                assert after is None, (item.scope, item.key)
            else:
                assert after is not None, (item.scope, item.key)
                assert before - (time.time() - started) - 2 < after <= before + 0.01, (item.key, before, after)
    # the source is unchanged
    assert [(i.scope, i.key) for i in await state.items()] == [(i.scope, i.key) for i in items]
    assert await motia.redis(REDIS, ["get", "trace-t", "hold"]) == [{"seat": "C3"}]
