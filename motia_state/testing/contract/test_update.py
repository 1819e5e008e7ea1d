# mypy: disable-error-code="arg-type,dict-item,attr-defined,no-untyped-call,unused-ignore"
# (These tests pass wrongly typed arguments to the API on purpose.)
"""SPEC §5: update operations, all or nothing, on every backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from motia_state import StateManager, StateValueError, UpdateOpError, ops
from motia_state.testing.helpers import assert_same


async def test_absent_entry_starts_as_empty_object(state: StateManager) -> None:
    result = await state.update("s", "k", [ops.increment("n")])
    assert result.old_value is None
    assert_same(result.new_value, {"n": 1})
    assert_same(await state.get("s", "k"), {"n": 1})
    result = await state.update("s", "empty", [])
    assert_same(result.new_value, {})


async def test_every_op(state: StateManager) -> None:
    await state.set("s", "k", {"n": 1, "f": 1.5, "list": [1], "text": "ab", "obj": {"a": 1, "b": 2}, "gone": 1})
    result = await state.update(
        "s",
        "k",
        [
            ops.set_("status", "confirmed"),
            ops.increment("n", 2),
            ops.decrement("f", 0.5),
            ops.increment("new", 3),
            ops.decrement("neg"),
            ops.append("list", {"x": 1}),
            ops.append("text", "cd"),
            ops.append("fresh", 1),
            ops.remove("gone"),
            ops.remove("absent"),
            ops.merge({"b": 3, "c": 4}, path="obj"),
            ops.merge({"top": True}),
            {"type": "set", "path": ["venue", "address", "city"], "value": "Lisbon"},
            {"type": "increment", "path": ["counters", "views"], "by": 10},
        ],
    )
    expected = {
        "n": 3,
        "f": 1.0,
        "list": [1, {"x": 1}],
        "text": "abcd",
        "obj": {"a": 1, "b": 3, "c": 4},
        "status": "confirmed",
        "new": 3,
        "neg": -1,
        "fresh": [1],
        "top": True,
        "venue": {"address": {"city": "Lisbon"}},
        "counters": {"views": 10},
    }
    assert_same(result.new_value, expected)
    assert_same(await state.get("s", "k"), expected)


async def test_dotted_path_is_one_literal_field(state: StateManager) -> None:
    result = await state.update("s", "k", [ops.set_("a.b", 1), ops.increment(["a", "b"], 5)])
    assert_same(result.new_value, {"a.b": 1, "a": {"b": 5}})


async def test_non_object_intermediates_become_objects(state: StateManager) -> None:
    await state.set("s", "k", {"a": 5, "b": [1]})
    result = await state.update("s", "k", [ops.set_(["a", "x"], 1), ops.set_(["b", "y", "z"], 2)])
    assert_same(result.new_value, {"a": {"x": 1}, "b": {"y": {"z": 2}}})
    await state.set("s", "scalar", 7)
    result = await state.update("s", "scalar", [ops.set_("x", 1)])
    assert_same(result.new_value, {"x": 1})


async def test_set_root_replaces_whole_value(state: StateManager) -> None:
    await state.set("s", "k", {"a": 1})
    result = await state.update("s", "k", [ops.set_("", [1, 2]), ops.append("", 3)])
    assert_same(result.new_value, [1, 2, 3])
    result = await state.update("s", "k", [ops.set_("", 10), ops.increment("", 1.5)])
    assert_same(result.new_value, 11.5)


async def test_numbers_keep_their_type(state: StateManager) -> None:
    await state.set("s", "k", {"i": 2**70, "f": 1e16})
    result = await state.update("s", "k", [ops.increment("i", 1), ops.increment("f", 0), ops.increment("n", 1.0)])
    assert_same(result.new_value, {"i": 2**70 + 1, "f": 1e16, "n": 1.0})
    assert_same(await state.get("s", "k"), {"i": 2**70 + 1, "f": 1e16, "n": 1.0})


async def test_increment_by_an_int_of_any_size_is_exact(state: StateManager) -> None:
    # An int too big for a float is a number like any other (it once raised OverflowError).
    await state.set("s", "k", {"n": 2**70})
    result = await state.update("s", "k", [ops.increment("n", 10**400), ops.decrement("m", 3**500)])
    assert_same(result.new_value, {"n": 2**70 + 10**400, "m": -(3**500)})
    assert_same(await state.get("s", "k"), {"n": 2**70 + 10**400, "m": -(3**500)})


async def test_merge_is_shallow(state: StateManager) -> None:
    await state.set("s", "k", {"a": {"x": 1, "y": 2}, "b": 1})
    result = await state.update("s", "k", [ops.merge({"a": {"z": 3}})])
    assert_same(result.new_value, {"a": {"z": 3}, "b": 1})


BAD_OPS: list[tuple[list[Any], int]] = [
    ([ops.set_("a", 1), {"type": "explode", "path": "a"}], 1),
    ([{"type": "increment", "path": "text", "by": 1}], 0),
    ([ops.set_("a", 1), ops.increment("text")], 1),
    ([ops.increment("flag")], 0),
    ([ops.increment("nothing"), ops.increment("n", True)], 1),  # type: ignore[arg-type]
    ([ops.append("obj", 1)], 0),
    ([ops.append("n", 1)], 0),
    ([ops.append("text", 1)], 0),
    ([ops.merge({"x": 1}, path="list")], 0),
    ([{"type": "merge", "value": [1]}], 0),
    ([{"type": "set", "path": "a"}], 0),
    ([{"type": "set", "path": 5, "value": 1}], 0),
    ([{"type": "set", "path": ["a", ""], "value": 1}], 0),
    ([ops.set_("a", 1), "not a dict"], 1),  # type: ignore[list-item]
    ([{"path": "a", "value": 1}], 0),
    ([ops.remove("")], 0),
    ([ops.increment("n", float("inf"))], 0),
    ([ops.set_("a", 1), ops.set_("b", 2), {"type": "set", "path": "c", "value": 1, "extra": 1}], 2),
]


@pytest.mark.parametrize(("bad", "index"), BAD_OPS, ids=[f"op{i}" for i in range(len(BAD_OPS))])
async def test_bad_op_raises_with_index_and_writes_nothing(state: StateManager, bad: list[Any], index: int) -> None:
    before = {"text": "t", "flag": True, "obj": {"a": 1}, "n": 1, "list": [1]}
    await state.set("s", "k", before, ttl=100)
    with pytest.raises(UpdateOpError) as info:
        await state.update("s", "k", bad)
    assert info.value.op_index == index
    assert isinstance(info.value, ValueError)
    assert_same(await state.get("s", "k"), before)
    left = await state.ttl("s", "k")
    assert left is not None and left > 90


async def test_failed_update_of_absent_entry_creates_nothing(state: StateManager) -> None:
    with pytest.raises(UpdateOpError) as info:
        await state.update("s", "absent", [ops.set_("a", "x"), ops.increment("a")])
    assert info.value.op_index == 1
    with pytest.raises(UpdateOpError):
        await state.update("s", "absent", [ops.set_("a", 1), {"type": "bogus"}])
    assert await state.keys("s") == []
    assert await state.list_groups() == []


async def test_float_overflow_is_an_op_error(state: StateManager) -> None:
    await state.set("s", "k", {"f": 1.7e308})
    with pytest.raises(UpdateOpError) as info:
        await state.update("s", "k", [ops.increment("f", 1e308)])
    assert info.value.op_index == 0
    with pytest.raises(UpdateOpError) as info:  # a float plus an int beyond any float
        await state.update("s", "k", [ops.increment("n", 1), ops.increment("f", 10**400)])
    assert info.value.op_index == 1
    assert await state.get("s", "k") == {"f": 1.7e308}


async def test_invalid_value_inside_op_is_a_value_error(state: StateManager) -> None:
    await state.set("s", "k", {"a": 1})
    for bad in (float("nan"), {1: 2}, "nul\x00", {1, 2}):
        with pytest.raises(StateValueError):
            await state.update("s", "k", [ops.set_("b", 1), ops.set_("a", bad)])
    assert await state.get("s", "k") == {"a": 1}


async def test_ops_must_be_a_list(state: StateManager) -> None:
    with pytest.raises(UpdateOpError):
        await state.update("s", "k", {"type": "set", "path": "a", "value": 1})  # type: ignore[arg-type]
    assert await state.keys("s") == []


async def test_op_values_are_copied(state: StateManager) -> None:
    payload = {"x": [1]}
    await state.update("s", "k", [ops.set_("a", payload), ops.set_("b", payload)])
    payload["x"].append(2)
    got = await state.get("s", "k")
    assert got == {"a": {"x": [1]}, "b": {"x": [1]}}


async def test_many_updates_of_one_key_at_once_each_get_their_own_result(state: StateManager) -> None:
    """A hot key: every update is applied once, in some order, and each caller sees its own step of it; one
    refused in the crowd fails alone; the results are the caller's own objects."""

    async def bump(i: int) -> Any:
        if i % 50 == 7:  # refused: "text" holds a string
            with pytest.raises(UpdateOpError):
                await state.update("s", "hot", [ops.increment("n"), ops.increment("text")])
            return None
        return await state.update("s", "hot", [ops.increment("n"), ops.append("seen", i)])

    await state.set("s", "hot", {"n": 0, "seen": [], "text": "t"})
    results = [r for r in await asyncio.gather(*(bump(i) for i in range(300))) if r is not None]
    assert len(results) == 300 - 6
    assert sorted(r.new_value["n"] for r in results) == list(range(1, 295))
    for r in results:
        assert r.old_value["n"] == r.new_value["n"] - 1
        assert r.new_value["seen"][:-1] == r.old_value["seen"]
    final = await state.get("s", "hot")
    assert final["n"] == 294 and sorted(final["seen"]) == sorted(r.new_value["seen"][-1] for r in results)
    # No caller's value is another's object (one caller changing what it got cannot touch another's).
    new_ids = {id(r.new_value) for r in results} | {id(r.new_value["seen"]) for r in results}
    assert not new_ids & ({id(r.old_value) for r in results} | {id(r.old_value["seen"]) for r in results})


async def test_many_creating_updates_of_one_key_at_once(state: StateManager) -> None:
    results = await asyncio.gather(*(state.update("s", "new", [ops.increment("n")]) for _ in range(100)))
    assert sum(r.old_value is None for r in results) == 1
    assert sorted(r.new_value["n"] for r in results) == list(range(1, 101))
    assert await state.get("s", "new") == {"n": 100}
