# mypy: disable-error-code="arg-type,dict-item,attr-defined,no-untyped-call,unused-ignore"
# (These tests pass wrongly typed arguments to the API on purpose.)
"""SPEC §3 and §4: value rules, scope and key rules, on every backend."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypedDict

import pydantic
import pytest

from motia_state import StateError, StateKeyError, StateManager, StateValueError
from motia_state.testing.helpers import assert_same

EXACT_VALUES: list[Any] = [
    1,
    -1,
    0,
    1.0,
    -1.5,
    0.1,
    2**70,
    -(2**70),
    2**63,
    2**64 + 1,
    10**40,
    1e16,
    1e300,
    -1e300,
    1e-7,
    5e-324,
    1.7976931348623157e308,
    123456789.123456789,
    1e15 + 0.3,
    "",
    "text",
    "quote ' and \" and \\ backslash",
    "line\nbreak\ttab\u2028\u2029",
    "emoji 😀 and accents é ß 中文",
    'looks like json: {"a": 1}',
    "1e16",
    True,
    False,
    None,
    [],
    {},
    [[]],
    {"a": {}},
    {"a": []},
    [1, 1.0, "1", True, None, [], {}],
    {"nested": {"deep": {"deeper": [1, {"x": 2**70, "y": 1e16, "z": []}]}}},
    {"": "empty key", " ": "space", "a.b": 1, "$": 2, "%_*?[": 3},
    list(range(300)),
]


@pytest.mark.parametrize(
    "value",
    # A stored null reads like no entry to a store without the "null" ability.
    [pytest.param(v, marks=pytest.mark.motia_state_needs("null")) if v is None else v for v in EXACT_VALUES],
    ids=[f"v{i}" for i in range(len(EXACT_VALUES))],
)
async def test_exact_round_trip(state: StateManager, value: Any) -> None:
    result = await state.set("s", "k", value)
    assert_same(result.new_value, value)
    assert_same(await state.get("s", "k"), value)
    assert_same(await state.list("s"), [value])
    assert_same((await state.items("s"))[0].value, value)
    assert_same(await state.get_many("s", ["k"]), {"k": value})
    assert_same((await state.set("s", "k", 0)).old_value, value)


@pytest.mark.motia_state_needs("null")
async def test_exact_round_trip_through_set_many_and_update(state: StateManager) -> None:
    values = {f"k{i}": v for i, v in enumerate(EXACT_VALUES)}
    await state.set_many("s", values)
    got = await state.get_many("s", list(values))
    assert_same(got, values)
    doc = {"big": 2**70, "f": 1e16, "tiny": 1e-7, "obj": {}, "arr": [], "one": 1.0}
    await state.set("s", "doc", doc)
    result = await state.update("s", "doc", [{"type": "set", "path": "added", "value": {"x": 1e300, "y": []}}])
    expected = {**doc, "added": {"x": 1e300, "y": []}}
    assert_same(result.old_value, doc)
    assert_same(result.new_value, expected)
    assert_same(await state.get("s", "doc"), expected)


async def test_huge_ints_round_trip_or_are_refused_cleanly(state: StateManager) -> None:
    big = {"n": 10**4000 + 7, "neg": -(10**4000)}
    await state.set("s", "big", big)
    assert_same(await state.get("s", "big"), big)
    # Past Python's int/str conversion limit (4300 digits by default) no JSON text can hold it.
    with pytest.raises(StateValueError) as info:
        await state.set("s", "huge", {"x": [1, 10**5000]})
    assert info.value.path == "value['x'][1]"
    with pytest.raises(StateValueError):
        await state.set("s", "huge", -(10**5000))
    assert await state.keys("s") == ["big"]


async def test_large_value(state: StateManager) -> None:
    value = {"blob": "x" * 1_000_000, "items": [{"i": i, "f": i / 7} for i in range(2000)]}
    await state.set("s", "big", value)
    assert_same(await state.get("s", "big"), value)


async def test_tuples_dataclasses_and_models_are_stored_as_json(state: StateManager) -> None:
    @dataclasses.dataclass
    class Venue:
        id: str
        seats: tuple[int, ...]

    class Customer(pydantic.BaseModel):
        name: str
        tags: list[str]

    result = await state.set(
        "s", "k", {"t": (1, 2), "venue": Venue("v1", (1, 2)), "c": Customer(name="Ada", tags=["x"])}
    )
    expected = {"t": [1, 2], "venue": {"id": "v1", "seats": [1, 2]}, "c": {"name": "Ada", "tags": ["x"]}}
    assert_same(result.new_value, expected)
    assert_same(await state.get("s", "k"), expected)


class Unknown:
    pass


REJECTED: list[tuple[Any, str]] = [
    (math.nan, "value"),
    (math.inf, "value"),
    (-math.inf, "value"),
    ({"a": [1, {"b": math.nan}]}, "value['a'][1]['b']"),
    ({1: "int key"}, "value"),
    ({"a": {None: 1}}, "value['a']"),
    ({("t",): 1}, "value"),
    ("nul \x00 inside", "value"),
    ({"k\x00": 1}, "value"),
    (["ok", "bad\x00"], "value[1]"),
    ({1, 2}, "value"),
    (b"bytes", "value"),
    (bytearray(b"x"), "value"),
    (datetime.now(UTC), "value"),
    (Decimal("1.5"), "value"),
    (Unknown(), "value"),
    ({"nested": [Unknown()]}, "value['nested'][0]"),
    (1 + 2j, "value"),
    ("lone surrogate \ud800", "value"),
]


@pytest.mark.parametrize(("value", "path"), REJECTED, ids=[f"r{i}" for i in range(len(REJECTED))])
async def test_invalid_values_rejected_and_nothing_written(state: StateManager, value: Any, path: str) -> None:
    await state.set("scope-1", "key-1", "before")
    with pytest.raises(StateValueError) as info:
        await state.set("scope-1", "key-1", value)
    message = str(info.value)
    assert "scope-1" in message and "key-1" in message
    assert path in message
    assert info.value.path == path
    assert isinstance(info.value, ValueError) and isinstance(info.value, StateError)
    assert await state.get("scope-1", "key-1") == "before"
    with pytest.raises(StateValueError):
        await state.set_many("scope-1", {"other": 1, "key-1": value})
    assert await state.keys("scope-1") == ["key-1"]
    with pytest.raises(StateValueError):
        await state.update("scope-1", "key-1", [{"type": "set", "path": "x", "value": value}])
    assert await state.get("scope-1", "key-1") == "before"


async def test_reads_return_fresh_objects(state: StateManager) -> None:
    value = {"list": [1, {"x": 1}], "d": {"y": 2}}
    result = await state.set("s", "k", value)
    value["list"].append(99)
    result.new_value["d"]["y"] = 100
    first = await state.get("s", "k")
    assert first == {"list": [1, {"x": 1}], "d": {"y": 2}}
    first["list"][1]["x"] = "mutated"
    first["d"].clear()
    assert await state.get("s", "k") == {"list": [1, {"x": 1}], "d": {"y": 2}}
    listed = await state.list("s")
    listed[0]["d"]["y"] = 0
    (await state.items("s"))[0].value["d"]["y"] = 0
    (await state.get_many("s", ["k"]))["k"]["d"]["y"] = 0
    updated = await state.update("s", "k", [{"type": "set", "path": "z", "value": [1]}])
    updated.new_value["z"].append(2)
    updated.old_value["d"]["y"] = 0
    assert await state.get("s", "k") == {"list": [1, {"x": 1}], "d": {"y": 2}, "z": [1]}


BAD_NAMES: list[Any] = ["", None, 1, b"scope", "nul\x00", ["a"], "lone \udfff"]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=[f"n{i}" for i in range(len(BAD_NAMES))])
async def test_bad_scope_or_key_raises_state_key_error(state: StateManager, bad: Any) -> None:
    calls = [
        lambda: state.get(bad, "k"),
        lambda: state.get("s", bad),
        lambda: state.set(bad, "k", 1),
        lambda: state.set("s", bad, 1),
        lambda: state.delete(bad, "k"),
        lambda: state.delete("s", bad),
        lambda: state.clear(bad),
        lambda: state.update(bad, "k", []),
        lambda: state.update("s", bad, []),
        lambda: state.list(bad),
        lambda: state.keys(bad),
        lambda: state.items(bad if bad is not None else ""),  # items(None) means every scope
        lambda: state.get_many(bad, ["k"]),
        lambda: state.get_many("s", [bad]),
        lambda: state.set_many(bad, {"k": 1}),
        lambda: state.set_many("s", {bad: 1} if isinstance(bad, Hashable) else {"k": 1, None: 1}),
        lambda: state.delete_many(bad, ["k"]),
        lambda: state.delete_many("s", [bad]),
        lambda: state.ttl(bad, "k"),
        lambda: state.ttl("s", bad),
    ]
    for call in calls:
        with pytest.raises(StateKeyError) as info:
            await call()
        assert isinstance(info.value, ValueError)
    assert await state.list_groups() == []


SPECIAL = [
    ":",
    "a:b",
    "*",
    "?",
    "[a]",
    "%",
    "_",
    "a%",
    "a_",
    "{",
    "}",
    "{x}",
    "\\",
    ".",
    "a.b",
    " ",
    " lead",
    "😀",
    "'",
    '"',
    "'; DROP TABLE motia_state; --",
    "motia:state:",
    "x' OR '1'='1",
    "\\%",
    "a\nb",
    "null",
    "NULL",
]


async def test_special_characters_are_literal(state: StateManager) -> None:
    for i, name in enumerate(SPECIAL):
        await state.set(name, name, i)
    await state.set("plain", "plain", -1)
    await state.set("ab", "ab", -2)
    await state.set("a", "b:c", "scope a key b:c")
    await state.set("a:b", "c", "scope a:b key c")
    assert await state.get("a", "b:c") == "scope a key b:c"
    assert await state.get("a:b", "c") == "scope a:b key c"
    for i, name in enumerate(SPECIAL):
        assert await state.get(name, name) == i, name
        expected_keys = [name, "c"] if name == "a:b" else [name]
        assert await state.keys(name) == sorted(expected_keys), name
    assert await state.keys("a") == ["b:c"]
    assert await state.list_groups() == sorted({*SPECIAL, "plain", "ab", "a"})
    # Glob and LIKE characters never widen a match.
    for pattern in ("*", "?", "[a]", "%", "_", "a%", "a_", "\\%"):
        assert await state.clear(pattern) == 1, pattern
    assert await state.get("ab", "ab") == -2
    assert await state.get("plain", "plain") == -1
    assert await state.get("a:b", "c") == "scope a:b key c"


class BookingDict(TypedDict):
    status: str
    seats: int


@dataclasses.dataclass
class Customer:
    name: str
    email: str


@dataclasses.dataclass
class Booking:
    customer: Customer
    seats: list[int]
    note: str | None = None


class Payment(pydantic.BaseModel):
    status: str
    amount: float


async def test_typed_get(state: StateManager) -> None:
    await state.set("s", "booking", {"customer": {"name": "Ada", "email": "a@x"}, "seats": [1, 2]})
    booking = await state.get("s", "booking", type=Booking)
    assert booking == Booking(Customer("Ada", "a@x"), [1, 2])
    assert isinstance(booking.customer, Customer)
    await state.set("s", "payment", {"status": "pending", "amount": 100})
    payment = await state.get("s", "payment", type=Payment)
    assert payment == Payment(status="pending", amount=100.0)
    await state.set("s", "dict", {"status": "ok", "seats": 3})
    assert await state.get("s", "dict", type=BookingDict) == {"status": "ok", "seats": 3}
    await state.set("s", "many", [{"name": "a", "email": "b"}])
    assert await state.get("s", "many", type=list[Customer]) == [Customer("a", "b")]
    assert await state.get("s", "missing", type=Booking) is None
    with pytest.raises(StateValueError):
        await state.get("s", "many", type=Booking)
