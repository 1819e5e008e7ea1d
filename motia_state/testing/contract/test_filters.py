# mypy: disable-error-code="arg-type,dict-item,attr-defined,no-untyped-call,unused-ignore"
# (These tests pass wrongly typed arguments to the API on purpose.)
"""SPEC §6: items filters, on every backend (SQL backends run them in the database)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from motia_state import StateManager, StateValueError
from motia_state.testing.helpers import mark_all

DATA: dict[str, Any] = {
    "e1": {"n": 10, "s": "apple", "b": True, "l": [1, "x", {"k": 1}, [2]], "o": {"p": 5}, "z": None, "a.b": "dot"},
    "e2": {"n": 9, "s": "Banana", "b": False, "l": [], "o": {"p": "5"}},
    "e3": {"n": "10", "s": 5, "f": 1.5},
    "e4": {"n": 10.0, "s": "apple pie%_", "l": ["1"], "o": "not an object"},
    "e5": 7,
    "e6": {"n": None, "s": "ápple", "l": [1.0, True]},
    "e7": {"n": 100, "s": "b", "n2": 2**70, "l": "a list? no, a string"},
    "e8": {"n": -1.5, "s": "%", "o": {"p": None}},
    "e9": [1, 2],
}

CASES: list[tuple[Any, list[str]]] = [
    ({"path": "n", "op": "eq", "value": 10}, ["e1", "e4"]),
    ({"path": "n", "op": "eq", "value": 10.0}, ["e1", "e4"]),
    ({"path": "n", "op": "eq", "value": "10"}, ["e3"]),
    ({"path": "n", "op": "eq", "value": None}, ["e6"]),
    ({"path": "b", "op": "eq", "value": True}, ["e1"]),
    ({"path": "b", "op": "eq", "value": 1}, []),
    ({"path": "n", "op": "eq", "value": True}, []),
    ({"path": "o", "op": "eq", "value": {"p": 5}}, ["e1"]),
    ({"path": "l", "op": "eq", "value": []}, ["e2"]),
    ({"path": "n", "op": "neq", "value": 10}, ["e2", "e7", "e8"]),
    ({"path": "s", "op": "neq", "value": "apple"}, ["e2", "e4", "e6", "e7", "e8"]),
    ({"path": "n", "op": "gt", "value": 9}, ["e1", "e4", "e7"]),
    ({"path": "n", "op": "gte", "value": 10}, ["e1", "e4", "e7"]),
    ({"path": "n", "op": "lt", "value": 10}, ["e2", "e8"]),
    ({"path": "n", "op": "lte", "value": 9.0}, ["e2", "e8"]),
    ({"path": "n", "op": "gt", "value": "1"}, ["e3"]),
    ({"path": "n2", "op": "gt", "value": 2**70 - 1}, ["e7"]),
    ({"path": "n2", "op": "lt", "value": 2**70 + 1}, ["e7"]),
    ({"path": "s", "op": "gt", "value": "apple"}, ["e4", "e6", "e7"]),
    ({"path": "s", "op": "lt", "value": "a"}, ["e2", "e8"]),
    ({"path": "s", "op": "gte", "value": "b"}, ["e6", "e7"]),
    ({"path": "b", "op": "gt", "value": 0}, []),
    ({"path": "b", "op": "gte", "value": False}, []),
    ({"path": "s", "op": "contains", "value": "pp"}, ["e1", "e4", "e6"]),
    ({"path": "s", "op": "contains", "value": "%_"}, ["e4"]),
    ({"path": "s", "op": "contains", "value": "_"}, ["e4"]),
    ({"path": "s", "op": "contains", "value": "A"}, []),
    ({"path": "l", "op": "contains", "value": 1}, ["e1", "e6"]),
    ({"path": "l", "op": "contains", "value": "1"}, ["e4"]),
    ({"path": "l", "op": "contains", "value": True}, ["e6"]),
    ({"path": "l", "op": "contains", "value": {"k": 1}}, ["e1"]),
    ({"path": "l", "op": "contains", "value": [2]}, ["e1"]),
    ({"path": "l", "op": "contains", "value": "string"}, ["e7"]),
    ({"path": "s", "op": "notContains", "value": "pp"}, ["e2", "e7", "e8"]),
    ({"path": "l", "op": "notContains", "value": 1}, ["e2", "e4"]),
    ({"path": "s", "op": "startsWith", "value": "app"}, ["e1", "e4"]),
    ({"path": "s", "op": "startsWith", "value": "%"}, ["e8"]),
    ({"path": "s", "op": "endsWith", "value": "%_"}, ["e4"]),
    ({"path": "s", "op": "endsWith", "value": "e"}, ["e1", "e6"]),
    ({"path": "s", "op": "startsWith", "value": 5}, []),
    ({"path": "z", "op": "isNull"}, ["e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9", "e1"]),
    ({"path": "z", "op": "isNotNull"}, []),
    ({"path": "n", "op": "isNull"}, ["e5", "e6", "e9"]),
    ({"path": "n", "op": "isNotNull"}, ["e1", "e2", "e3", "e4", "e7", "e8"]),
    ({"path": ["o", "p"], "op": "eq", "value": 5}, ["e1"]),
    ({"path": ["o", "p"], "op": "eq", "value": "5"}, ["e2"]),
    ({"path": ["o", "p"], "op": "isNull"}, ["e3", "e4", "e5", "e6", "e7", "e8", "e9"]),
    ({"path": ["o", "p"], "op": "isNotNull"}, ["e1", "e2"]),
    ({"path": "a.b", "op": "eq", "value": "dot"}, ["e1"]),
    ({"path": ["a", "b"], "op": "isNotNull"}, []),
    ({"path": "", "op": "eq", "value": 7}, ["e5"]),
    ({"path": "", "op": "gt", "value": 1}, ["e5"]),
    ({"path": "", "op": "contains", "value": 2}, ["e9"]),
    ({"path": "missing", "op": "neq", "value": 1}, []),
    ({"path": "missing", "op": "notContains", "value": "x"}, []),
]


@pytest_asyncio.fixture
async def filled(state: StateManager) -> StateManager:
    await state.set_many("f", DATA)
    await state.set("other-scope", "e1", DATA["e1"])
    return state


@pytest.mark.parametrize(("flt", "expected"), CASES, ids=[f"f{i}" for i in range(len(CASES))])
async def test_filter(filled: StateManager, flt: dict[str, Any], expected: list[str]) -> None:
    items = await filled.items("f", filters=[flt])
    assert [i.key for i in items] == sorted(expected)
    for item in items:
        assert item.value == DATA[item.key]


async def test_filters_are_anded_and_limited(filled: StateManager) -> None:
    flt = [{"path": "n", "op": "gte", "value": 9}, {"path": "s", "op": "startsWith", "value": "a"}]
    assert [i.key for i in await filled.items("f", filters=flt)] == ["e1", "e4"]
    assert [i.key for i in await filled.items("f", filters=flt, limit=1)] == ["e1"]


async def test_filters_across_every_scope(filled: StateManager) -> None:
    items = await filled.items(filters=[{"path": "s", "op": "eq", "value": "apple"}])
    assert [(i.scope, i.key) for i in items] == [("f", "e1"), ("other-scope", "e1")]


async def test_injection_in_filter_path_and_value_is_literal(filled: StateManager) -> None:
    await filled.set("f", "weird", {"x') OR 1=1 --": "'; DROP TABLE motia_state; --", "$.a[0]": 1, "*": "%"})
    found = await filled.items(
        "f", filters=[{"path": "x') OR 1=1 --", "op": "eq", "value": "'; DROP TABLE motia_state; --"}]
    )
    assert [i.key for i in found] == ["weird"]
    assert [i.key for i in await filled.items("f", filters=[{"path": "$.a[0]", "op": "eq", "value": 1}])] == ["weird"]
    assert [i.key for i in await filled.items("f", filters=[{"path": "*", "op": "isNotNull"}])] == ["weird"]
    assert [i.key for i in await filled.items("f", filters=[{"path": "s", "op": "eq", "value": "' OR ''='"}])] == []
    assert len(await filled.keys("f")) == len(DATA) + 1


BAD_FILTERS: list[Any] = [
    {"path": "n", "op": "like", "value": 1},
    {"path": "n", "op": "eq"},
    {"path": 5, "op": "eq", "value": 1},
    {"path": "n", "op": "eq", "value": float("nan")},
    {"path": "n", "op": "eq", "value": 1, "extra": True},
    "not a filter",
]


@pytest.mark.parametrize("bad", BAD_FILTERS, ids=[f"b{i}" for i in range(len(BAD_FILTERS))])
async def test_bad_filter_raises(state: StateManager, bad: Any) -> None:
    with pytest.raises(StateValueError):
        await state.items(filters=[bad])


# Every test above: a module-level pytestmark would not travel with the tests when the suite is imported.
mark_all(globals(), "listing")
