"""items() filters run in SQL; they must agree with ops.match (the reference) on every tricky case."""

from __future__ import annotations

from typing import Any

import pytest

from motia_state import StateManager
from motia_state.ops import FILTER_OPS, match, parse_filters

pytestmark = pytest.mark.postgres

FIELDS: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    9,
    10,
    100,
    2**70,
    1e16,
    1e-7,
    "",
    "a",
    "A",
    "b",
    "ab",
    "abc",
    "é",
    "z",
    "10",
    "9",
    "1",
    "a%c",
    "a_c",
    "\\",
    "😀",
    [],
    [1],
    [1.0, "a"],
    ["a", "b"],
    [[1]],
    [True],
    [None],
    [{"a": 1}],
    ["ab"],
    {},
    {"a": 1},
    {"0": "zero"},
]

OPERANDS: list[Any] = [None, True, 0, 1, 1.0, 9, 10, 1.5, "", "a", "b", "1", "10", "é", "%", "_", [1], {"a": 1}, 2**70]

PATHS: list[Any] = ["f", ["g", "h"], ["f", "0"], ["f", "a"], "missing", ""]


def _doc(v: Any) -> Any:
    return {"f": v, "g": {"h": v}}


@pytest.fixture
async def loaded(pg: StateManager) -> dict[str, Any]:
    docs: dict[str, Any] = {f"d{i:03}": _doc(v) for i, v in enumerate(FIELDS)}
    # Entries that are not objects at all, or where the path runs through a non-object.
    docs.update({"x-null": None, "x-num": 5, "x-str": "f", "x-list": [{"f": 1}], "x-g-scalar": {"g": 3, "f": None}})
    await pg.set_many("s", docs)
    return docs


async def _check(pg: StateManager, docs: dict[str, Any], raw_filters: list[dict[str, Any]]) -> None:
    filters = parse_filters(raw_filters)
    expected = [k for k in sorted(docs) if match(docs[k], filters)]
    got = [item.key for item in await pg.items("s", filters=raw_filters)]
    assert got == expected, raw_filters


@pytest.mark.parametrize("path", PATHS, ids=repr)
async def test_sql_filters_agree_with_match(pg: StateManager, loaded: dict[str, Any], path: Any) -> None:
    for op in FILTER_OPS:
        if op in ("isNull", "isNotNull"):
            await _check(pg, loaded, [{"path": path, "op": op}])
            continue
        for operand in OPERANDS:
            await _check(pg, loaded, [{"path": path, "op": op, "value": operand}])


async def test_combined_filters_and_limit(pg: StateManager, loaded: dict[str, Any]) -> None:
    both = [{"path": "f", "op": "gte", "value": 1}, {"path": ["g", "h"], "op": "lt", "value": 100}]
    await _check(pg, loaded, both)
    filters = parse_filters(both)
    expected = [k for k in sorted(loaded) if match(loaded[k], filters)][:2]
    assert [i.key for i in await pg.items("s", filters=both, limit=2)] == expected
    assert [i.key for i in await pg.items(None, filters=both, limit=2)] == expected


async def test_filter_operands_are_bound_not_interpolated(pg: StateManager) -> None:
    await pg.set("s", "k", {"f": "it's"})
    sneaky = "x') OR TRUE OR ('"
    assert await pg.items("s", filters=[{"path": "f", "op": "eq", "value": sneaky}]) == []
    assert await pg.items("s", filters=[{"path": sneaky, "op": "isNotNull"}]) == []
    assert [i.key for i in await pg.items("s", filters=[{"path": "f", "op": "contains", "value": "'"}])] == ["k"]
