"""Hostile input on every backend: generated values, scopes, keys and filters.

Every input either round-trips exactly (same types all the way down) or is rejected with StateValueError /
StateKeyError; never a raw driver error, never a change to another entry (a sentinel must stay intact).
SQL-injection and glob/LIKE patterns are stored and matched literally.

The tests are plain functions driving one store per test through an ``asyncio.Runner``: hypothesis runs
many examples against that one store (function-scoped async fixtures cannot be shared across examples),
and the store is wiped between examples.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from motia_state import StateError, StateKeyError, StateManager, StateValueError
from motia_state.ops import match, parse_filters
from tests.conftest import BACKENDS, FACTORIES
from tests.services import IN_CI

pytestmark = pytest.mark.timeout(240)

SENTINEL = ("sentinel\u2603", "s")
SENTINEL_VALUE = {"keep": [1, 2.5, "x", None, True, {"deep": {}}], "big": 2**70}

# Characters that mean something to SQL, LIKE, globs, Redis key layout, JSON paths or terminals.
NASTY = [
    "'", '"', ";", "--", "/*", "%", "_", "*", "?", "[", "]", "^", "!", "{", "}", "\\", ":", ".", " ", "$", "#",
    "/", "|", "\n", "\t", "\u00e9", "\U0001f600", "\u200b", "a", "b", "A", "1", "OR 1=1", "DROP TABLE motia_state",
    "%25", "%7D", "$.a", "->>",
]  # fmt: skip
BAD_CHARS = ["\x00", "\ud800", "\udfff"]

nasty_text = st.lists(st.sampled_from(NASTY), min_size=1, max_size=4).map("".join)
any_text = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=10)
hostile_name = st.one_of(nasty_text, any_text, st.lists(st.sampled_from(NASTY + BAD_CHARS), max_size=3).map("".join))
non_str_name = st.one_of(st.none(), st.integers(), st.binary(max_size=3), st.tuples(st.text(max_size=2)))

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    nasty_text,
    st.binary(max_size=4),
    st.sets(st.integers(), max_size=3),
    st.frozensets(st.integers(), max_size=2),
)
hashable_non_str = st.one_of(st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False), st.binary(max_size=2))
json_ish: st.SearchStrategy[Any] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.one_of(any_text, nasty_text), children, max_size=4),
        st.dictionaries(hashable_non_str, children, min_size=1, max_size=2),
    ),
    max_leaves=16,
)


def _nest(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"d": value}
    return value


# Values nested deeper than this (containers + leaf) may be refused with StateValueError instead of stored;
# never anything else. The store keeps at least this many levels.
MAY_BE_TOO_DEEP = 129


class Rejected(Exception):
    """The oracle: this value breaks SPEC §3."""


def _bad_text(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def expected_stored(value: Any) -> tuple[Any, int]:
    """SPEC §3 as an oracle, iteratively (deep values): the stored form and the depth, or Rejected."""
    root: list[Any] = [None]
    # Each job: (value, container to fill, slot in it, depth).
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 1)]
    depth = 0
    while stack:
        v, parent, slot, d = stack.pop()
        depth = max(depth, d)
        t = type(v)
        if v is None or t is bool or t is int:
            parent[slot] = v
        elif t is float:
            if not math.isfinite(v):
                raise Rejected
            parent[slot] = v
        elif t is str:
            if _bad_text(v):
                raise Rejected
            parent[slot] = v
        elif t is list or t is tuple:
            out: list[Any] = [None] * len(v)
            parent[slot] = out
            stack.extend((item, out, i, d + 1) for i, item in enumerate(v))
        elif t is dict:
            obj: dict[str, Any] = {}
            parent[slot] = obj
            for k, item in v.items():
                if type(k) is not str or _bad_text(k):
                    raise Rejected
                obj[k] = None
                stack.append((item, obj, k, d + 1))
        else:
            raise Rejected
    return root[0], depth


def assert_same(got: Any, expected: Any) -> None:
    """Equal with the same types all the way down; iterative, so deep values compare too."""
    stack: list[tuple[Any, Any, str]] = [(got, expected, "value")]
    while stack:
        g, e, path = stack.pop()
        assert type(g) is type(e), f"{path}: {type(g).__name__} {g!r:.80} != {type(e).__name__} {e!r:.80}"
        if type(e) is dict:
            assert list(g) == list(e) or set(g) == set(e), f"{path}: keys {sorted(g)} != {sorted(e)}"
            stack.extend((g[k], e[k], f"{path}[{k!r}]") for k in e)
        elif type(e) is list:
            assert len(g) == len(e), f"{path}: length {len(g)} != {len(e)}"
            stack.extend((gi, ei, f"{path}[{i}]") for i, (gi, ei) in enumerate(zip(g, e, strict=True)))
        else:
            assert g == e, f"{path}: {g!r} != {e!r}"


def _valid_name(name: object) -> bool:
    return type(name) is str and name != "" and not _bad_text(name)


HYPOTHESIS = settings(
    deadline=None,
    max_examples=40,
    derandomize=IN_CI,  # CI runs a fixed set of examples; local runs keep exploring
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)


async def _make(backend: str, tmp_path: Path) -> StateManager:
    return await FACTORIES[backend](tmp_path)


@contextmanager
def store_for(backend: str, tmp_path: Path) -> Iterator[tuple[asyncio.Runner, StateManager]]:
    """One store for the whole test (with the sentinel written), driven by one event loop."""
    with asyncio.Runner() as runner:
        state: StateManager = runner.run(_make(backend, tmp_path))
        try:
            runner.run(state.set(*SENTINEL, SENTINEL_VALUE))
            yield runner, state
            runner.run(_assert_sentinel(state))
        finally:
            runner.run(state.close())


async def _assert_sentinel(state: StateManager) -> None:
    assert_same(await state.get(*SENTINEL), SENTINEL_VALUE)
    assert SENTINEL[0] in await state.list_groups()


async def _wipe(state: StateManager) -> None:
    """Remove everything but the sentinel; then check the sentinel is intact."""
    for scope in await state.list_groups():
        if scope != SENTINEL[0]:
            await state.clear(scope)
    keys = await state.keys(SENTINEL[0])
    if keys != [SENTINEL[1]]:
        await state.delete_many(SENTINEL[0], [k for k in keys if k != SENTINEL[1]])
    await _assert_sentinel(state)
    assert await state.list_groups() == [SENTINEL[0]]


async def _expect(error: type[StateError], call: Callable[[], Any], what: str) -> None:
    try:
        await call()
    except error:
        return
    except Exception as exc:
        pytest.fail(f"{what}: expected {error.__name__}, got {type(exc).__module__}.{type(exc).__name__}: {exc!r:.300}")
    pytest.fail(f"{what}: expected {error.__name__}, but it was accepted")


# --- values ----------------------------------------------------------------------------------------------


async def _check_value(state: StateManager, value: Any) -> None:
    scope, key = "values", "v"
    try:
        stored, depth = expected_stored(value)
        rejected = False
    except Rejected:
        stored, depth, rejected = None, 0, True
    try:
        await state.set(scope, key, value)
    except StateValueError:
        assert rejected or depth > MAY_BE_TOO_DEEP, f"a valid value of depth {depth} was refused"
        assert await state.get(scope, key) is None, "a refused value was written"
        await _expect(
            StateValueError, lambda: state.update(scope, key, [{"type": "set", "path": "x", "value": value}]), "update"
        )
        await _expect(StateValueError, lambda: state.set_many(scope, {"a": 1, "b": value}), "set_many")
        assert await state.get_many(scope, ["a", "b"]) == {}, "set_many wrote part of a refused batch"
        assert await state.get(scope, "x") is None
    except Exception as exc:
        pytest.fail(f"set raised {type(exc).__module__}.{type(exc).__name__} instead of StateValueError: {exc!r:.300}")
    else:
        assert not rejected, f"an invalid value was accepted: {value!r:.200}"
        assert_same(await state.get(scope, key), stored)
        assert_same(await state.list(scope), [stored])
        assert_same((await state.get_many(scope, [key]))[key], stored)
        assert_same((await state.items(scope))[0].value, stored)
        assert_same((await state.update(scope, "u", [{"type": "set", "path": "", "value": value}])).new_value, stored)
        assert_same(await state.get(scope, "u"), stored)
        await state.set_many(scope, {"m": value})
        assert_same(await state.get(scope, "m"), stored)
        assert_same((await state.set(scope, key, 0)).old_value, stored)
    await _wipe(state)


def _run_values(backend: str, tmp_path: Path, strategy: st.SearchStrategy[Any], examples: int) -> None:
    with store_for(backend, tmp_path) as (runner, state):

        @settings(HYPOTHESIS, max_examples=examples)
        @given(value=strategy)
        @example(value=float("nan"))
        @example(value={"a": [1, 2.0, float("-inf")]})
        @example(value={"x": "nul\x00"})
        @example(value=["lone \ud83d surrogate"])
        @example(value={1: "int key"})
        @example(value={"a": {2**70: 1}})
        @example(value={"s": {1, 2}})
        @example(value=b"bytes")
        @example(value={"big": 2**200, "neg": -(2**100), "f": 1e300, "tiny": 5e-324, "z": -0.0})
        @example(value={"": {}, "e": [], "t": (1, (2.5, "x"))})
        def check(value: Any) -> None:
            runner.run(_check_value(state, value))

        check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_values_round_trip_exactly_or_are_refused(backend: str, tmp_path: Path) -> None:
    """SPEC §3: any generated value round-trips with the same types, or StateValueError and nothing written."""
    _run_values(backend, tmp_path, json_ish, 60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deeply_nested_values_round_trip_or_are_refused(backend: str, tmp_path: Path) -> None:
    """Nesting up to 1500 levels: stored exactly, or refused with StateValueError (never RecursionError)."""
    with store_for(backend, tmp_path) as (runner, state):
        # The depth is generated, not the value: printing a 1500-level value would itself recurse too deep.
        @settings(HYPOTHESIS, max_examples=12)
        @given(depth=st.integers(min_value=1, max_value=1500))
        @example(depth=128)
        @example(depth=255)
        @example(depth=256)
        @example(depth=257)
        @example(depth=600)
        @example(depth=1500)
        def check(depth: int) -> None:
            runner.run(_check_value(state, _nest(depth)))

        check()


# --- scopes and keys -------------------------------------------------------------------------------------


async def _check_names(state: StateManager, scope: Any, key: Any) -> None:
    if (scope, key) == SENTINEL or scope == SENTINEL[0]:
        return
    if not (_valid_name(scope) and _valid_name(key)):
        value = {"v": 1}
        calls: dict[str, Callable[[], Any]] = {
            "get": lambda: state.get(scope, key),
            "set": lambda: state.set(scope, key, value),
            "delete": lambda: state.delete(scope, key),
            "update": lambda: state.update(scope, key, [{"type": "set", "path": "v", "value": 1}]),
            "ttl": lambda: state.ttl(scope, key),
            "get_many": lambda: state.get_many(scope, [key]),
            "set_many": lambda: state.set_many(scope, {key: value}),
            "delete_many": lambda: state.delete_many(scope, [key]),
        }
        if not _valid_name(scope):
            calls.update(
                clear=lambda: state.clear(scope),
                keys=lambda: state.keys(scope),
                list=lambda: state.list(scope),
            )
            if scope is not None:  # items(None) means every scope
                calls["items"] = lambda: state.items(scope)
        for name, call in calls.items():
            await _expect(StateKeyError, call, f"{name}({scope!r}, {key!r})")
        await _wipe(state)
        return
    value = {"scope": scope, "key": key}
    assert (await state.set(scope, key, value)).old_value is None
    assert await state.get(scope, key) == value
    assert await state.keys(scope) == [key]
    assert await state.list(scope) == [value]
    assert await state.get_many(scope, [key, key + "x"]) == {key: value}
    assert await state.list_groups() == sorted([scope, SENTINEL[0]])
    items = await state.items()
    assert [(it.scope, it.key) for it in items] == sorted([(scope, key), SENTINEL])
    assert (await state.update(scope, key, [{"type": "set", "path": key, "value": scope}])).new_value == {
        **value,
        key: scope,
    }
    assert await state.ttl(scope, key) is None
    assert await state.delete(scope, key) == {**value, key: scope}
    assert await state.keys(scope) == []
    await state.set_many(scope, {key: 1, key + "2": 2})
    assert await state.clear(scope) == 2
    await _wipe(state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_generated_scopes_and_keys_are_literal_or_refused(backend: str, tmp_path: Path) -> None:
    """SPEC §4: any text is a literal scope/key, or StateKeyError (empty, U+0000, lone surrogate, non-str)."""
    with store_for(backend, tmp_path) as (runner, state):

        @settings(HYPOTHESIS, max_examples=60)
        @given(scope=st.one_of(hostile_name, non_str_name), key=st.one_of(hostile_name, non_str_name))
        @example(scope="", key="k")
        @example(scope="s", key="")
        @example(scope="a\x00b", key="k")
        @example(scope="s", key="\ud800")
        @example(scope=b"bytes", key="k")
        @example(scope="s", key=7)
        @example(scope="x' OR '1'='1", key="'; DROP TABLE motia_state; --")
        @example(scope="*", key="*")
        @example(scope="a}:b", key="c")
        def check(scope: Any, key: Any) -> None:
            runner.run(_check_names(state, scope, key))

        check()


valid_nasty = nasty_text.filter(_valid_name)


async def _check_isolation(state: StateManager, entries: dict[tuple[str, str], int]) -> None:
    entries = {k: v for k, v in entries.items() if k[0] != SENTINEL[0]}
    by_scope: dict[str, dict[str, int]] = {}
    for (scope, key), v in entries.items():
        by_scope.setdefault(scope, {})[key] = v
    for i, ((scope, key), v) in enumerate(entries.items()):
        if i % 2:
            await state.set(scope, key, v)
        else:
            await state.set_many(scope, {key: v})
    assert await state.list_groups() == sorted([*by_scope, SENTINEL[0]])
    for scope, mapping in by_scope.items():
        assert await state.keys(scope) == sorted(mapping), scope
        assert await state.list(scope) == [mapping[k] for k in sorted(mapping)], scope
        for key, v in mapping.items():
            assert await state.get(scope, key) == v, (scope, key)
    everything = await state.items()
    assert [(it.scope, it.key, it.value) for it in everything if it.scope != SENTINEL[0]] == sorted(
        (s, k, v) for (s, k), v in entries.items()
    )
    # clear(scope) removes exactly that scope: glob/LIKE characters never widen it.
    for scope, mapping in by_scope.items():
        assert await state.clear(scope) == len(mapping), scope
        assert scope not in await state.list_groups()
    await _wipe(state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scopes_and_keys_with_pattern_characters_never_touch_each_other(backend: str, tmp_path: Path) -> None:
    """Scopes/keys full of ``% _ * ? [ ] { } : \\ '`` stay separate: listing and clear are exact."""
    with store_for(backend, tmp_path) as (runner, state):

        @settings(HYPOTHESIS, max_examples=30)
        @given(entries=st.dictionaries(st.tuples(valid_nasty, valid_nasty), st.integers(), min_size=1, max_size=8))
        @example(entries={("a:b", "c"): 1, ("a", "b:c"): 2, ("user", "k"): 3, ("user2", "k"): 4})
        @example(entries={("%", "k"): 1, ("_", "k"): 2, ("a%", "k"): 3, ("ab", "k"): 4, ("a_", "_"): 5})
        @example(entries={("*", "*"): 1, ("?", "[a]"): 2, ("a", "a"): 3, ("[a]", "?"): 4})
        @example(entries={("{x}", "k"): 1, ("x", "k"): 2, ("}", "}"): 3, ("%7D", "k"): 4, ("\\", "\\%"): 5})
        def check(entries: dict[tuple[str, str], int]) -> None:
            runner.run(_check_isolation(state, entries))

        check()


# --- filters -----------------------------------------------------------------------------------------------

FILTER_OPS = ["eq", "neq", "gt", "gte", "lt", "lte", "contains", "notContains", "startsWith", "endsWith"]
field_names = st.one_of(valid_nasty, st.sampled_from(["a", "b", "a.b", "%", "_", "'", "a'b", "*"]))
field_values = st.one_of(nasty_text.filter(_valid_name), st.integers(-5, 5), st.floats(-5, 5), st.booleans(), st.none())
documents = st.dictionaries(
    field_names,
    st.one_of(field_values, st.lists(field_values, max_size=3), st.dictionaries(field_names, field_values, max_size=2)),
    max_size=4,
)


async def _check_filter(state: StateManager, docs: list[dict[str, Any]], flt: dict[str, Any]) -> None:
    scope = "filters%_*"
    await state.set_many(scope, {f"d{i:02d}": d for i, d in enumerate(docs)})
    try:
        parsed = parse_filters([flt])
    except StateError as exc:
        await _expect(type(exc), lambda: state.items(scope, filters=[flt]), f"items(filters=[{flt!r}])")
    else:
        expected = [f"d{i:02d}" for i, d in enumerate(docs) if match(d, parsed)]
        try:
            got = [it.key for it in await state.items(scope, filters=[flt])]
        except Exception as exc:
            pytest.fail(f"items(filters=[{flt!r}]) raised {type(exc).__module__}.{type(exc).__name__}: {exc!r:.300}")
        assert got == expected, f"filter {flt!r} over {docs!r}"
    await _wipe(state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_filters_with_injection_and_like_patterns_match_literally(backend: str, tmp_path: Path) -> None:
    """SPEC §6: filter paths and operands full of SQL/LIKE/JSON-path syntax match exactly as ``ops.match``."""
    with store_for(backend, tmp_path) as (runner, state):

        @settings(HYPOTHESIS, max_examples=40)
        @given(
            docs=st.lists(documents, min_size=1, max_size=5),
            path=st.one_of(field_names, st.lists(field_names, min_size=1, max_size=2)),
            op=st.sampled_from([*FILTER_OPS, "isNull", "isNotNull"]),
            operand=field_values,
        )
        @example(docs=[{"a": "abc"}, {"a": "%"}, {"a": "a_c"}], path="a", op="startsWith", operand="%")
        @example(docs=[{"a": "abc"}, {"a": "a_c"}], path="a", op="contains", operand="_")
        @example(docs=[{"a": "x"}, {"a'b": "x"}], path="a'b", op="eq", operand="x")
        @example(docs=[{"a": {"b": 1}}, {"a.b": 1}], path="a.b", op="eq", operand=1)
        @example(docs=[{"a": "x' OR '1'='1"}, {"a": "y"}], path="a", op="eq", operand="x' OR '1'='1")
        @example(docs=[{"a": "ab\\"}, {"a": "ab"}], path="a", op="endsWith", operand="\\")
        def check(docs: list[dict[str, Any]], path: Any, op: str, operand: Any) -> None:
            flt: dict[str, Any] = {"path": path, "op": op}
            if op not in ("isNull", "isNotNull"):
                flt["value"] = operand
            runner.run(_check_filter(state, docs, flt))

        check()
