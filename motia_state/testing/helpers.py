"""Assertions shared by the contract tests."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest


def assert_same(got: Any, expected: Any, path: str = "value") -> None:
    """Equal, and with the same Python types all the way down (1 is not 1.0, {} is not [])."""
    assert type(got) is type(expected), f"{path}: {type(got).__name__} {got!r} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert set(got) == set(expected), f"{path}: keys {sorted(got)} != {sorted(expected)}"
        for k in expected:
            assert_same(got[k], expected[k], f"{path}[{k!r}]")
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{path}: length {len(got)} != {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{path}[{i}]")
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def mark_all(namespace: MutableMapping[str, Any], *capabilities: str) -> None:
    """Mark every ``test_*`` function of a module as needing ``capabilities``."""
    mark = pytest.mark.motia_state_needs(*capabilities)
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            namespace[name] = mark(value)
