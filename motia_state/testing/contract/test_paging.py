"""Keyset paging: ``items(scope, limit=N, after=key)`` on every backend (what copy and export stream with)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from motia_state import StateKeyError, StateManager, StateValueError
from motia_state.testing.helpers import mark_all

# Keys whose code point order differs from numeric, case-insensitive or locale order.
SPECIAL = ["%", "_", "%a", "_a", "a%", "a_", "a", "a:b", "a:b:c", "a b", "ab", "A", "Z", "é", "😀", "\\", "[", "*", "~"]


async def _page_all(state: StateManager, scope: str, size: int, **options: Any) -> list[list[str]]:
    """Every page of ``scope`` (keys only), following ``after`` = last key of the previous page."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await state.items(scope, limit=size, after=after, **options)
        assert all(item.scope == scope for item in page)
        if not page:
            return pages
        pages.append([item.key for item in page])
        after = page[-1].key
        assert len(pages) < 100, "paging does not end"


async def test_paging_returns_every_key_once_in_order(state: StateManager) -> None:
    keys = [f"k{i}" for i in range(250)]  # "k10" < "k2": code point order, not numeric
    await state.set_many("orders", {k: {"k": k} for k in keys})
    # Neighbouring scopes must not leak into the pages.
    await state.set_many("orders2", {"k0": 1, "zz": 2})
    await state.set_many("order", {"k0": 1, "zz": 2})

    pages = await _page_all(state, "orders", 100)
    assert [len(p) for p in pages] == [100, 100, 50]
    flat = [k for p in pages for k in p]
    assert flat == sorted(keys)

    # Values and the scope come with the keys of the page.
    page = await state.items("orders", limit=3, after=flat[99])
    assert [(i.scope, i.key, i.value) for i in page] == [("orders", k, {"k": k}) for k in flat[100:103]]
    assert all(i.expires_at is None for i in page)


async def test_after_without_limit_returns_the_rest(state: StateManager) -> None:
    await state.set_many("s", {"a": 1, "b": 2, "c": 3, "d": 4})
    assert [i.key for i in await state.items("s", after="b")] == ["c", "d"]
    # A key that is not stored is a position too.
    assert [i.key for i in await state.items("s", after="bb")] == ["c", "d"]
    assert [i.key for i in await state.items("s", after="0")] == ["a", "b", "c", "d"]


async def test_after_beyond_the_last_key_is_empty(state: StateManager) -> None:
    await state.set_many("s", {"a": 1, "b": 2})
    assert await state.items("s", after="b") == []
    assert await state.items("s", after="c", limit=10) == []
    assert await state.items("s", after="\U0010ffff") == []
    assert await state.items("empty-scope", after="a", limit=5) == []


async def test_after_with_filters(state: StateManager) -> None:
    await state.set_many("s", {f"k{i:03d}": {"n": i, "tag": "even" if i % 2 == 0 else "odd"} for i in range(40)})
    filters: list[dict[str, Any]] = [
        {"path": "tag", "op": "eq", "value": "even"},
        {"path": "n", "op": "gte", "value": 10},
    ]

    got = await state.items("s", filters=filters, after="k020", limit=3)
    assert [i.key for i in got] == ["k022", "k024", "k026"]

    # Paging with filters visits every match once; entries failing the filters never fill a page.
    pages = await _page_all(state, "s", 4, filters=filters)
    assert [k for p in pages for k in p] == [f"k{i:03d}" for i in range(10, 40, 2)]
    assert all(len(p) == 4 for p in pages[:-1])

    assert await state.items("s", filters=[{"path": "n", "op": "lt", "value": 5}], after="k004") == []


async def test_after_with_special_characters(state: StateManager) -> None:
    await state.set_many("a:b", {k: k for k in SPECIAL})
    await state.set_many("a", {"b:c": "other scope"})  # scope "a" key "b:c" is not scope "a:b"
    ordered = sorted(SPECIAL)
    for k in ordered:
        got = await state.items("a:b", after=k)
        assert [i.key for i in got] == [x for x in ordered if x > k], k
        assert [i.value for i in got] == [x for x in ordered if x > k], k
    # % and _ are literal (no LIKE wildcards), and so are glob characters.
    assert [i.key for i in await state.items("a:b", after="%", limit=2)] == ordered[1:3]
    assert [i.key for i in await state.items("a:b", after="a:b", limit=1)] == ["a:b:c"]
    # Positions between stored keys, with an emoji and an accented letter.
    assert [i.key for i in await state.items("a:b", after="é")] == [x for x in ordered if x > "é"]
    assert [i.key for i in await state.items("a:b", after="😀")] == []
    assert [k for p in await _page_all(state, "a:b", 4) for k in p] == ordered


async def test_paging_skips_expired_entries(state: StateManager) -> None:
    await state.set_many("s", {f"live{i}": i for i in range(6)})
    await state.set_many("s", {f"live{i}x": i for i in range(3)}, ttl=0.001)  # between the live keys
    await state.set("s", "zz-gone", 1, ttl=0.001)
    await state.set("s", "live9", {"ttl": True}, ttl=3600)
    await asyncio.sleep(0.05)

    pages = await _page_all(state, "s", 2)
    # Expired entries take no place in a page: every page but the last is full.
    assert pages == [["live0", "live1"], ["live2", "live3"], ["live4", "live5"], ["live9"]]
    assert await state.items("s", after="live5") == await state.items("s", after="live5", limit=5)
    (last,) = await state.items("s", after="live5")
    assert last.key == "live9" and last.value == {"ttl": True}
    assert last.expires_at is not None and last.expires_at > datetime.now(UTC)


async def test_after_needs_a_scope_and_a_key(state: StateManager) -> None:
    await state.set("s", "a", 1)
    with pytest.raises(StateValueError, match="scope"):
        await state.items(after="a")
    with pytest.raises(StateValueError, match="scope"):
        await state.items(None, after="a", limit=3)
    bad: Any
    for bad in (1, b"a", "", "a\x00"):
        with pytest.raises(StateKeyError):
            await state.items("s", after=bad)
    # Nothing above changed the store.
    assert [i.key for i in await state.items("s")] == ["a"]


# Every test above: a module-level pytestmark would not travel with the tests when the suite is imported.
mark_all(globals(), "listing")
