"""SPEC §2: every operation, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from motia_state import SetResult, StateItem, StateKeyError, StateManager, StateValueError
from motia_state.testing.helpers import assert_same


async def test_get_missing_is_none(state: StateManager) -> None:
    assert await state.get("trace-1", "nothing") is None


async def test_set_returns_old_and_new(state: StateManager) -> None:
    first = await state.set("trace-1", "booking", {"status": "pending"})
    assert first == SetResult(old_value=None, new_value={"status": "pending"})
    second = await state.set("trace-1", "booking", {"status": "confirmed"})
    assert second.old_value == {"status": "pending"}
    assert second.new_value == {"status": "confirmed"}
    assert await state.get("trace-1", "booking") == {"status": "confirmed"}


async def test_delete_returns_old_value(state: StateManager) -> None:
    await state.set("s", "k", [1, 2])
    assert await state.delete("s", "k") == [1, 2]
    assert await state.get("s", "k") is None
    assert await state.delete("s", "k") is None
    assert await state.keys("s") == []


@pytest.mark.parametrize(
    "falsy", [0, 0.0, "", False, [], {}, pytest.param(None, marks=pytest.mark.motia_state_needs("null"), id="None")]
)
async def test_falsy_values_are_stored_listed_and_deleted(state: StateManager, falsy: object) -> None:
    await state.set("s", "k", falsy)
    assert await state.keys("s") == ["k"]
    assert_same(await state.list("s"), [falsy])
    assert_same(await state.get_many("s", ["k"]), {"k": falsy})
    assert_same((await state.set("s", "k", 1)).old_value, falsy)
    await state.set("s", "k", falsy)
    assert_same(await state.delete("s", "k"), falsy)
    assert await state.keys("s") == []
    assert await state.list_groups() == []


@pytest.mark.motia_state_needs("counts")
async def test_clear_removes_exactly_one_scope(state: StateManager) -> None:
    for scope in ("user", "user2", "use", "user:1"):
        await state.set(scope, "a", 1)
        await state.set(scope, "b", 2)
    assert await state.clear("user") == 2
    assert await state.keys("user") == []
    for scope in ("user2", "use", "user:1"):
        assert await state.keys(scope) == ["a", "b"]
    assert await state.clear("user") == 0
    assert await state.list_groups() == ["use", "user2", "user:1"]


async def test_list_is_ordered_by_key(state: StateManager) -> None:
    await state.set_many("s", {"b": 2, "a": 1, "c": 3})
    assert await state.list("s") == [1, 2, 3]
    assert await state.list("empty") == []


async def test_keys_and_groups_sort_by_code_point(state: StateManager) -> None:
    names = ["b", "a", "B", "é", "😀", "Z", "a0", "~", "_", "%", "a b", "ä", "A", "1", "10", "9"]
    await state.set_many("s", {n: n for n in names})
    assert await state.keys("s") == sorted(names)
    assert await state.list("s") == sorted(names)
    for n in names:
        await state.set(n, "k", 1)
    assert await state.list_groups() == sorted([*names, "s"])


async def test_list_groups_only_scopes_with_live_entries(state: StateManager) -> None:
    assert await state.list_groups() == []
    await state.set("t1", "k", 1)
    await state.set("t2", "k", 1)
    await state.set("t3", "k", 1)
    await state.delete("t2", "k")
    await state.clear("t3")
    assert await state.list_groups() == ["t1"]


async def test_items_all_scopes_and_one_scope(state: StateManager) -> None:
    await state.set("b", "k2", {"v": 2})
    await state.set("a", "k1", {"v": 1})
    await state.set("b", "k1", [1])
    items = await state.items()
    assert [(i.scope, i.key) for i in items] == [("a", "k1"), ("b", "k1"), ("b", "k2")]
    assert all(isinstance(i, StateItem) and i.expires_at is None for i in items)
    assert items[2].value == {"v": 2}
    only_b = await state.items("b")
    assert [(i.scope, i.key, i.value) for i in only_b] == [("b", "k1", [1]), ("b", "k2", {"v": 2})]
    assert [i.key for i in await state.items(limit=2)] == ["k1", "k1"]
    assert await state.items(limit=0) == []
    assert await state.items("nope") == []


async def test_items_expires_at_is_aware_utc(state: StateManager) -> None:
    before = datetime.now(UTC)
    await state.set("s", "k", 1, ttl=60)
    (item,) = await state.items("s")
    assert item.expires_at is not None
    assert item.expires_at.utcoffset() is not None and item.expires_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    seconds = (item.expires_at - before).total_seconds()
    assert 55 < seconds < 65


async def test_items_limit_must_be_valid(state: StateManager) -> None:
    with pytest.raises(StateValueError):
        await state.items(limit=-1)


@pytest.mark.motia_state_needs("null")
async def test_get_many(state: StateManager) -> None:
    await state.set_many("s", {"a": 1, "b": None, "c": {"x": [1]}})
    got = await state.get_many("s", ["c", "missing", "a", "b"])
    assert got == {"c": {"x": [1]}, "a": 1, "b": None}
    assert await state.get_many("s", []) == {}
    assert await state.get_many("other", ["a"]) == {}


async def test_set_many_is_all_or_nothing(state: StateManager) -> None:
    await state.set("s", "a", "old")
    with pytest.raises(StateValueError):
        await state.set_many("s", {"a": "new", "b": 1, "c": float("nan")})
    assert await state.get("s", "a") == "old"
    assert await state.keys("s") == ["a"]
    with pytest.raises(StateKeyError):
        await state.set_many("s", {"a": "new", "": 1})
    assert await state.get("s", "a") == "old"


async def test_set_many_large_batch(state: StateManager) -> None:
    mapping = {f"k{i:04d}": {"i": i} for i in range(1000)}
    await state.set_many("big", mapping)
    assert len(await state.keys("big")) == 1000
    assert await state.get("big", "k0999") == {"i": 999}
    assert await state.delete_many("big", [f"k{i:04d}" for i in range(0, 1000, 2)]) == 500
    assert len(await state.keys("big")) == 500


async def test_delete_many_counts_existing(state: StateManager) -> None:
    await state.set_many("s", {"a": 1, "b": 2, "c": 3})
    assert await state.delete_many("s", ["a", "c", "zzz"]) == 2
    assert await state.keys("s") == ["b"]
    assert await state.delete_many("s", []) == 0


async def test_ttl_reports_seconds_left(state: StateManager) -> None:
    assert await state.ttl("s", "missing") is None
    await state.set("s", "forever", 1)
    assert await state.ttl("s", "forever") is None
    await state.set("s", "soon", 1, ttl=30)
    left = await state.ttl("s", "soon")
    assert left is not None and 25 < left <= 30


async def test_concurrent_increments_lose_nothing(state: StateManager) -> None:
    await asyncio.gather(
        *(state.update("s", "counter", [{"type": "increment", "path": "n", "by": 1}]) for _ in range(200))
    )
    assert await state.get("s", "counter") == {"n": 200}


async def test_close_is_idempotent_and_store_reopens(state: StateManager) -> None:
    await state.set("s", "k", 1)
    await state.close()
    await state.close()
    async with state:
        assert await state.keys("s") == ["k"]


async def test_satisfies_motia_internal_state_manager_protocol(state: StateManager) -> None:
    for name in ("get", "set", "update", "delete", "list", "clear", "list_groups", "get_group"):
        assert asyncio.iscoroutinefunction(getattr(state, name)), name
    await state.set("trace", "b", 2)
    await state.set("trace", "a", 1)
    assert await state.get_group("trace") == [1, 2]


async def test_concurrent_sets_of_one_key_each_get_the_value_their_write_replaced(state: StateManager) -> None:
    """Many sets of one key at once (and of other keys between them): applied one after the other in some
    order, so the old values form one chain from the value before to the value stored; an expired value is no
    one's old value."""
    await state.set("s", "hot", {"v": -1})
    await state.set("s", "brief", {"v": -1}, ttl=0.2)
    await asyncio.sleep(0.5)

    def key_of(i: int) -> str:
        return "hot" if i % 2 else "brief" if i % 5 == 0 else f"k{i % 4}"

    async def write(i: int) -> int | None:
        result = await state.set("s", key_of(i), {"v": i}, ttl=60 if i % 3 == 0 else None)
        return None if result.old_value is None else int(result.old_value["v"])

    olds = await asyncio.gather(*(write(i) for i in range(60)))
    for key, start in (("hot", -1), ("brief", None)):
        mine = {i: old for i, old in enumerate(olds) if key_of(i) == key}
        by_old = {old: i for i, old in mine.items()}
        assert len(by_old) == len(mine), mine  # no two writes replaced the same value
        chain: list[int] = []
        at = start
        while at in by_old:
            at = by_old[at]
            chain.append(at)
        assert sorted(chain) == sorted(mine), mine  # one chain through every write of the key
        assert await state.get("s", key) == {"v": chain[-1]}


async def test_concurrent_lists_of_one_scope_each_get_their_own_objects(state: StateManager) -> None:
    """Lists of one scope at once: equal answers, none sharing a list or a value with another caller's."""
    expected = [{"i": i, "tags": ["a", {"deep": [i]}]} for i in range(5)]
    await state.set_many("s", {f"k{i}": v for i, v in enumerate(expected)})
    results = await asyncio.gather(*(state.list("s") for _ in range(16)))
    assert all(r == expected for r in results)
    assert len({id(r) for r in results}) == 16
    for j in range(5):
        assert len({id(r[j]) for r in results}) == 16
        assert len({id(r[j]["tags"][1]["deep"]) for r in results}) == 16
    results[0][0]["tags"][1]["deep"].append("mine")
    results[0].append("extra")
    assert all(r == expected for r in results[1:])
    assert await state.list("s") == expected
