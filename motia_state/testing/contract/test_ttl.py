"""SPEC §4: TTL and expiry, on every backend. Expiry waits are short real sleeps (no timing asserts)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from motia_state import StateManager, StateValueError
from motia_state.testing.helpers import mark_all

SHORT = 0.3  # seconds: long enough to read back on a loaded machine, short enough to wait for
WAIT = SHORT + 0.35


async def test_expired_entry_is_invisible_to_every_read(state: StateManager) -> None:
    await state.set("s", "gone", {"v": 1}, ttl=SHORT)
    await state.set("s", "kept", {"v": 2})
    await state.set("only-expiring", "k", 1, ttl=SHORT)
    assert await state.get("s", "gone") == {"v": 1}
    await asyncio.sleep(WAIT)
    assert await state.get("s", "gone") is None
    assert await state.keys("s") == ["kept"]
    assert await state.list("s") == [{"v": 2}]
    assert [i.key for i in await state.items("s")] == ["kept"]
    assert [(i.scope, i.key) for i in await state.items()] == [("s", "kept")]
    assert await state.get_many("s", ["gone", "kept"]) == {"kept": {"v": 2}}
    assert await state.list_groups() == ["s"]
    assert await state.ttl("s", "gone") is None
    assert await state.delete("s", "gone") is None
    await state.set("only-expiring", "k", 2, ttl=SHORT)
    await asyncio.sleep(WAIT)
    result = await state.set("only-expiring", "k", 3)
    assert result.old_value is None
    assert await state.items(filters=[{"path": "v", "op": "isNotNull"}]) == [
        i for i in await state.items() if i.key == "kept"
    ]


async def test_expired_entry_old_value_and_update_start_fresh(state: StateManager) -> None:
    await state.set("s", "k", {"n": 5}, ttl=SHORT)
    await asyncio.sleep(WAIT)
    result = await state.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])
    assert result.old_value is None
    assert result.new_value == {"n": 1}
    assert await state.ttl("s", "k") is None
    assert await state.delete_many("s", ["k"]) == 1


@pytest.mark.motia_state_needs("cleanup_counts")
async def test_cleanup_removes_and_counts_expired(state: StateManager) -> None:
    await state.set_many("s", {f"k{i}": i for i in range(5)}, ttl=SHORT)
    await state.set("s", "live", 1)
    await state.set("t", "x", 1, ttl=SHORT)
    await state.set("t", "y", 1, ttl=600)
    assert await state.cleanup() == 0
    await asyncio.sleep(WAIT)
    assert await state.get("s", "k0") is None  # a read does not steal cleanup's count
    assert await state.cleanup() == 6
    assert await state.cleanup() == 0
    assert await state.keys("s") == ["live"]
    assert await state.keys("t") == ["y"]
    assert await state.list_groups() == ["s", "t"]


async def test_clear_does_not_count_expired(state: StateManager) -> None:
    await state.set("s", "a", 1, ttl=SHORT)
    await state.set("s", "b", 1)
    await asyncio.sleep(WAIT)
    assert await state.clear("s") == 1
    assert await state.list_groups() == []


async def test_clear_of_a_big_scope_counts_only_live_entries(state: StateManager) -> None:
    await state.set_many("s", {f"live{i:03d}": {"i": i} for i in range(130)})
    await state.set_many("s", {f"gone{i:03d}": i for i in range(70)}, ttl=SHORT)
    await state.set_many("s", {f"live{i:03d}": {"i": -i} for i in range(0, 130, 5)})  # overwritten, still live
    await state.set_many("s2", {"live000": 1})  # a scope sharing the prefix is not touched
    await asyncio.sleep(WAIT)
    assert await state.clear("s") == 130
    assert await state.keys("s") == []
    assert await state.clear("s") == 0
    assert await state.keys("s2") == ["live000"]


async def test_set_many_overwrites_expired_and_live_entries(state: StateManager) -> None:
    # 300 entries: more than one statement's worth on SQL backends that split a batch.
    await state.set_many("s", {f"k{i:03d}": "old" for i in range(0, 300, 3)}, ttl=SHORT)
    await state.set_many("s", {f"k{i:03d}": "live" for i in range(1, 300, 3)})
    await asyncio.sleep(WAIT)
    mapping: dict[str, Any] = {f"k{i:03d}": {"i": i, "f": i / 2, "s": "é" * (i % 3)} for i in range(300)}
    await state.set_many("s", mapping, ttl=100)
    assert await state.get_many("s", list(mapping)) == mapping
    assert await state.keys("s") == sorted(mapping)
    for key in ("k000", "k001", "k002", "k299"):
        left = await state.ttl("s", key)
        assert left is not None and 50 < left <= 100
    await state.set_many("s", {"k000": 0, "k001": 1})  # no ttl: no expiry any more
    assert await state.ttl("s", "k000") is None and await state.ttl("s", "k001") is None
    assert await state.get_many("s", ["k000", "k001", "k002"]) == {"k000": 0, "k001": 1, "k002": mapping["k002"]}


async def test_millisecond_ttl(state: StateManager) -> None:
    await state.set("s", "k", 1, ttl=0.05)
    left = await state.ttl("s", "k")
    assert left is None or 0 <= left <= 0.05  # may already be gone on a slow machine
    await asyncio.sleep(0.3)
    assert await state.get("s", "k") is None
    await state.set("s", "k2", 1, ttl=2.5)
    left = await state.ttl("s", "k2")
    assert left is not None and 1.5 < left <= 2.5 and left != int(left)


async def test_sub_millisecond_ttl_is_accepted_and_expires(state: StateManager) -> None:
    await state.set("s", "k", 1, ttl=0.0004)
    await state.set_many("s", {"m": 1}, ttl=0.0001)
    await asyncio.sleep(0.1)
    assert await state.get_many("s", ["k", "m"]) == {}


async def test_set_replaces_earlier_expiry(state: StateManager) -> None:
    await state.set("s", "k", 1, ttl=SHORT)
    await state.set("s", "k", 2)
    assert await state.ttl("s", "k") is None
    await asyncio.sleep(WAIT)
    assert await state.get("s", "k") == 2
    await state.set("s", "k", 3, ttl=100)
    await state.set("s", "k", 4, ttl=50)
    left = await state.ttl("s", "k")
    assert left is not None and 40 < left <= 50


async def test_update_keeps_expiry(state: StateManager) -> None:
    await state.set("s", "k", {"n": 1}, ttl=SHORT)
    await state.update("s", "k", [{"type": "increment", "path": "n", "by": 1}])
    left = await state.ttl("s", "k")
    assert left is None or left <= SHORT  # None only if it already expired
    await asyncio.sleep(WAIT)
    assert await state.get("s", "k") is None
    await state.set("s", "k2", {"n": 1}, ttl=100)
    await state.update("s", "k2", [{"type": "set", "path": "", "value": [1]}])
    left = await state.ttl("s", "k2")
    assert left is not None and 90 < left <= 100


async def test_default_ttl_applies_to_writes_that_name_none(make_store: Callable[..., Awaitable[StateManager]]) -> None:
    state = await make_store(ttl=100)
    try:
        await state.set("s", "a", 1)
        await state.set_many("s", {"b": 1})
        await state.update("s", "c", [{"type": "set", "path": "x", "value": 1}])
        await state.set("s", "d", 1, ttl=5)
        for key in ("a", "b", "c"):
            left = await state.ttl("s", key)
            assert left is not None and 90 < left <= 100, key
        left = await state.ttl("s", "d")
        assert left is not None and left <= 5
    finally:
        await state.close()


BAD_TTLS: list[Any] = [0, -1, -0.5, float("nan"), float("inf"), True, False, "5", [1]]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=[f"t{i}" for i in range(len(BAD_TTLS))])
async def test_invalid_ttl_rejected_and_nothing_written(state: StateManager, ttl: Any) -> None:
    with pytest.raises(StateValueError):
        await state.set("s", "k", 1, ttl=ttl)
    with pytest.raises(StateValueError):
        await state.set_many("s", {"k": 1}, ttl=ttl)
    assert await state.keys("s") == []


# Every test above: a module-level pytestmark would not travel with the tests when the suite is imported.
mark_all(globals(), "ttl")
