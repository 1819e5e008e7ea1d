"""Properties of the pure layer (values, ops) that every backend relies on."""

from __future__ import annotations

import copy
import math
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motia_state import StateValueError, UpdateOpError
from motia_state.ops import FILTER_OPS, apply_ops, match, parse_filters, parse_ops
from motia_state.testing.helpers import assert_same
from motia_state.values import check_value, decode, encode

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8),
            children,
            max_size=5,
        ),
    ),
    max_leaves=25,
)
paths = st.one_of(
    st.sampled_from(["a", "b", "a.b", ""]), st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3)
)
raw_ops = st.fixed_dictionaries(
    {"type": st.sampled_from(["set", "increment", "decrement", "append", "remove", "merge", "bogus"]), "path": paths},
    optional={"value": json_values, "by": st.one_of(st.integers(-5, 5), st.floats(-5, 5), st.booleans())},
)


@given(json_values)
def test_encode_decode_is_exact(value: Any) -> None:
    checked = check_value(value, "s", "k")
    text = encode(checked)
    assert_same(decode(text), value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_written_positionally_with_a_fraction(f: float) -> None:
    text = encode(f)
    assert "e" not in text.lower() and "." in text
    assert decode(text) == f and isinstance(decode(text), float)


@given(json_values, st.lists(raw_ops, max_size=6))
@settings(max_examples=300)
def test_apply_ops_is_pure_and_fails_only_with_documented_errors(current: Any, ops: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(current)
    try:
        parsed = parse_ops(ops, "s", "k")
        result = apply_ops(current, parsed)
        check_value(result, "s", "k")
    except (UpdateOpError, StateValueError):
        pass
    assert_same(current, before)


@given(json_values, st.sampled_from(FILTER_OPS), st.sampled_from(["a", "b", ""]), scalars)
def test_match_never_raises(value: Any, op: str, path: str, operand: Any) -> None:
    flt = parse_filters([{"path": path, "op": op, "value": operand}])
    result = match(value, flt)
    assert isinstance(result, bool)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_rejected_with_their_path(bad: float) -> None:
    with pytest.raises(StateValueError) as info:
        check_value({"x": [1, bad]}, "s", "k")
    assert info.value.path == "value['x'][1]"


def test_int_limit_follows_pythons_setting() -> None:
    old = sys.get_int_max_str_digits()
    try:
        sys.set_int_max_str_digits(640)
        with pytest.raises(StateValueError, match="digits"):
            check_value({"n": 10**700}, "s", "k")
        assert decode(encode(check_value(10**600, "s", "k"))) == 10**600
    finally:
        sys.set_int_max_str_digits(old)
