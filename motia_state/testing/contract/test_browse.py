"""The state browser's reads (``motia_state.browse``): a page of scopes and a page of a key's history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from motia_state import Change, StateConfigError, StateKeyError, StateManager, StateValueError
from motia_state.browse import key_history, scope_page
from motia_state.testing.helpers import assert_same

# Scopes whose code point order differs from case-insensitive, locale, byte-pattern or numeric order, and
# characters that are wildcards somewhere (LIKE, glob, regex).
SCOPES = [
    "B", "a", "A", "Z", "é", "e", "a:b", "a:b:c", "a%", "a_", "a b", "ab", "[x]", "x]", "*", "?", "%", "_",
    "\\", "~", "😀", "😀x", "中文", "user", "user2", "10", "9", "a.b", "{t}", "}",
]  # fmt: skip
ORDERED = sorted(SCOPES)


async def _seed(state: StateManager, scopes: list[str] = ORDERED) -> None:
    # Two entries in some scopes: a scope is listed once whatever it holds.
    for i, s in enumerate(scopes):
        await state.set_many(s, {"k": i, "other": i} if i % 3 == 0 else {"k": i})


async def _all_pages(state: StateManager, size: int, **options: Any) -> list[list[str]]:
    """Every page of scopes, following ``after`` = the last scope of the previous page."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await scope_page(state, after=after, limit=size, **options)
        if not page:
            return pages
        pages.append(page)
        after = page[-1]
        assert len(pages) < 1000, "paging does not end"


# --- a page of scopes ------------------------------------------------------------------------------------


@pytest.mark.motia_state_needs("listing")
async def test_scopes_come_in_code_point_order_as_list_groups(state: StateManager) -> None:
    await _seed(state)
    assert await state.list_groups() == ORDERED
    assert ORDERED[:8] == ["%", "*", "10", "9", "?", "A", "B", "Z"] and ORDERED[-4:] == ["é", "中文", "😀", "😀x"]
    assert await scope_page(state, limit=1000) == ORDERED
    assert await scope_page(state) == ORDERED  # the default limit (50) holds them all
    assert await scope_page(state, limit=3) == ORDERED[:3]
    assert await scope_page(state, limit=1) == ORDERED[:1]


@pytest.mark.motia_state_needs("listing")
async def test_paging_by_two_reproduces_list_groups(state: StateManager) -> None:
    await _seed(state)
    pages = await _all_pages(state, 2)
    assert [s for p in pages for s in p] == await state.list_groups()
    # Every page but the last is full.
    assert all(len(p) == 2 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 2


@pytest.mark.motia_state_needs("listing")
async def test_after_is_a_position_kept_strictly_after(state: StateManager) -> None:
    await _seed(state)
    positions = [*ORDERED, "0", "a!", "a0", "aa", "b", "ä", "zzz", "\x01", "\U0010ffff", "😀w", "😀y"]
    for after in positions:
        assert await scope_page(state, after=after, limit=100) == [s for s in ORDERED if s > after], after
    assert await scope_page(state, after=ORDERED[-1]) == []
    assert await scope_page(state, after="\U0010ffff") == []
    # A position that is no scope pages on from where it would sort.
    assert await scope_page(state, after="a!", limit=2) == [s for s in ORDERED if s > "a!"][:2]


@pytest.mark.motia_state_needs("listing")
async def test_many_scopes_page_in_full_pages(state: StateManager) -> None:
    names = [f"trace-{i}" for i in range(130)]  # "trace-10" < "trace-2": code point order, not numeric
    await asyncio.gather(*(state.set(s, "k", 1) for s in names))
    pages = await _all_pages(state, 50)
    assert [len(p) for p in pages] == [50, 50, 30]
    assert [s for p in pages for s in p] == sorted(names)
    assert await scope_page(state, after=sorted(names)[64], limit=3) == sorted(names)[65:68]


@pytest.mark.motia_state_needs("listing")
async def test_search_is_a_plain_case_sensitive_substring(state: StateManager) -> None:
    await _seed(state)

    async def found(search: str, **options: Any) -> list[str]:
        return await scope_page(state, search=search, limit=1000, **options)

    for search in ["%", "_", "*", "?", "[", "[x]", "]", "\\", ".", "{", "}", ":", " ", "a", "A", "é", "😀", "中"]:
        assert await found(search) == [s for s in ORDERED if search in s], search
    # The wildcards match only themselves.
    assert await found("%") == ["%", "a%"]
    assert await found("_") == ["_", "a_"]
    assert await found("a_") == ["a_"]
    assert await found("a%") == ["a%"]
    # Case-sensitive, accents included.
    assert await found("b") == ["a b", "a.b", "a:b", "a:b:c", "ab"]
    assert await found("B") == ["B"]
    assert await found("e") == ["e", "user", "user2"]
    assert await found("user") == ["user", "user2"]
    assert await found("nothing-like-it") == []
    assert await found("a:b:c:d") == []
    # With after and paging; an empty search is no search.
    assert await found("a", after="a:b") == [s for s in ORDERED if "a" in s and s > "a:b"]
    pages = await _all_pages(state, 2, search="a")
    assert [s for p in pages for s in p] == [s for s in ORDERED if "a" in s]
    assert await found("") == ORDERED
    assert await scope_page(state, search=None, limit=2) == ORDERED[:2]


@pytest.mark.motia_state_needs("listing")
async def test_search_that_no_scope_can_contain_finds_nothing(state: StateManager) -> None:
    await _seed(state)
    assert await scope_page(state, search="a\x00") == []  # no scope holds U+0000
    assert await scope_page(state, search="\ud800") == []  # nor a lone surrogate


@pytest.mark.motia_state_needs("listing")
async def test_emptied_scopes_leave_the_pages(state: StateManager) -> None:
    await state.set("user", "k", 1)
    await state.set("user2", "k", 1)
    await state.set_many("a:b", {"k": 1, "j": 2})
    await state.set("a", "b:c", 1)  # scope "a" key "b:c" is not scope "a:b"
    await state.delete("user", "k")
    await state.clear("a:b")
    assert await scope_page(state) == ["a", "user2"]
    assert await scope_page(state, search="user") == ["user2"]
    await state.set("user", "back", 1)
    assert await scope_page(state) == ["a", "user", "user2"]


@pytest.mark.motia_state_needs("listing", "ttl")
async def test_scopes_holding_only_expired_entries_are_not_listed(state: StateManager) -> None:
    await state.set("live", "k", 1)
    await state.set_many("dead", {"k": 1, "j": 2}, ttl=0.05)
    await state.set("mixed", "gone", 1, ttl=0.05)
    await state.set("mixed", "kept", 2)
    await state.set("later", "k", 1, ttl=3600)
    # Expired-only scopes sorting first and in between: a page is filled past them.
    for s in ["0-dead", "a-dead", "m-dead", "x-dead"]:
        await state.set(s, "k", 1, ttl=0.05)
    await asyncio.sleep(0.2)
    live = ["later", "live", "mixed"]
    assert await state.list_groups() == live
    assert await scope_page(state) == live
    assert await scope_page(state, limit=1) == ["later"]
    assert await scope_page(state, after="later", limit=1) == ["live"]
    assert await scope_page(state, after="0", limit=2) == ["later", "live"]
    assert [s for p in await _all_pages(state, 1) for s in p] == live
    assert await scope_page(state, search="dead") == []
    assert await scope_page(state, search="i") == ["live", "mixed"]
    # Whether or not cleanup() has run.
    await state.cleanup()
    assert await scope_page(state) == live


@pytest.mark.motia_state_needs("listing")
async def test_scope_page_argument_checks(state: StateManager) -> None:
    await _seed(state, ["a", "b"])
    bad: Any
    for bad in (0, -1, True, False, 1.5, "2", None):
        with pytest.raises(StateValueError, match="limit"):
            await scope_page(state, limit=bad)
    for bad in ("", 1, b"a", "a\x00"):
        with pytest.raises(StateKeyError):
            await scope_page(state, after=bad)
    for bad in (1, b"a", ["a"]):
        with pytest.raises(StateValueError, match="search"):
            await scope_page(state, search=bad)
    with pytest.raises(TypeError):
        await scope_page(state, "a")  # type: ignore[call-arg]
    assert await scope_page(state, limit=10**30) == ["a", "b"]
    assert await state.list_groups() == ["a", "b"]  # nothing above changed the store


# --- a key's history -------------------------------------------------------------------------------------


def _summary(changes: list[Change]) -> list[tuple[str, str, str, Any, Any]]:
    return [(c.event, c.scope, c.key, c.old_value, c.new_value) for c in changes]


async def _watched(state: StateManager, scope: str, key: str, since: int, count: int) -> list[Change]:
    """The first ``count`` changes of ``scope``/``key`` after ``since``, as watch() delivers them."""
    out: list[Change] = []
    async with state.watch(scope, key=key, since=since) as changes:
        while len(out) < count:
            out.append(await asyncio.wait_for(anext(changes), 10.0))
    return out


@pytest.mark.motia_state_needs("changes")
async def test_history_is_newest_first_and_only_that_key(state: StateManager) -> None:
    since = await state.revision("s")
    await state.set("s", "k", {"n": 1})
    await state.set("s", "other", "x")
    await state.set("s2", "k", "elsewhere")  # the same key in another scope
    await state.set("s", "k", {"n": 2})
    await state.update("s", "k", [{"type": "increment", "path": "n", "by": 5}])
    await state.set("s", "k2", "a neighbour")
    await state.set("s:k", "k", "a scope like it")
    assert await state.delete("s", "k") == {"n": 7}

    history = await key_history(state, "s", "k")
    assert _summary(history) == [
        ("deleted", "s", "k", {"n": 7}, None),
        ("updated", "s", "k", {"n": 2}, {"n": 7}),
        ("updated", "s", "k", {"n": 1}, {"n": 2}),
        ("created", "s", "k", None, {"n": 1}),
    ]
    revisions = [c.revision for c in history]
    assert revisions == sorted(revisions, reverse=True) and len(set(revisions)) == 4
    # The very changes watch() delivers (revision, values, time, traceparent), reversed.
    watched = await _watched(state, "s", "k", since, 4)
    assert history == watched[::-1]
    assert [c.traceparent for c in history] == [c.traceparent for c in watched[::-1]]
    assert all(type(c.revision) is int and c.at.utcoffset() is not None for c in history)

    assert _summary(await key_history(state, "s", "other")) == [("created", "s", "other", None, "x")]
    assert _summary(await key_history(state, "s2", "k")) == [("created", "s2", "k", None, "elsewhere")]
    assert await key_history(state, "s", "absent") == []
    assert await key_history(state, "nowhere", "k") == []
    assert [c.event for c in await key_history(state, "s", "k", limit=1)] == ["deleted"]


@pytest.mark.motia_state_needs("changes")
async def test_before_pages_backwards_through_the_whole_history(state: StateManager) -> None:
    for i in range(23):
        await state.set("s", "k", i)
        if i % 4 == 0:
            await state.set("s", "noise", i)  # other keys' changes in between: revisions are not consecutive
    full = await key_history(state, "s", "k", limit=1000)
    assert [c.new_value for c in full] == list(range(22, -1, -1))

    pages: list[list[Change]] = []
    before: int | None = None
    while True:
        page = await key_history(state, "s", "k", before=before, limit=4)
        if not page:
            break
        pages.append(page)
        before = page[-1].revision
        assert len(pages) < 100, "paging does not end"
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 3]
    assert [c for p in pages for c in p] == full

    # ``before`` keeps revisions strictly below it, whether or not it is one of this key's.
    for i, change in enumerate(full):
        assert await key_history(state, "s", "k", before=change.revision, limit=1000) == full[i + 1 :]
        assert await key_history(state, "s", "k", before=change.revision + 1, limit=2) == full[i : i + 2]
    noise = await key_history(state, "s", "noise")
    for change in noise:
        assert await key_history(state, "s", "k", before=change.revision, limit=1000) == [
            c for c in full if c.revision < change.revision
        ]
    assert await key_history(state, "s", "k", before=full[-1].revision) == []
    assert await key_history(state, "s", "k", before=0) == []
    assert await key_history(state, "s", "k", before=1) == []
    assert await key_history(state, "s", "k", before=2**70, limit=1000) == full  # above every revision


@pytest.mark.motia_state_needs("changes")
async def test_history_of_a_rare_key_in_a_busy_scope(state: StateManager) -> None:
    # Far more changes of other keys of the scope than of this one, between and after its own.
    for i in range(3):
        await state.set("busy", "rare", i)
        await state.set_many("busy", {f"n{j}": i for j in range(70)})
    await state.set_many("busy", {f"m{j}": 0 for j in range(70)})
    assert [c.new_value for c in await key_history(state, "busy", "rare", limit=2)] == [2, 1]
    full = await key_history(state, "busy", "rare")
    assert [(c.event, c.new_value) for c in full] == [("updated", 2), ("updated", 1), ("created", 0)]
    pages = [await key_history(state, "busy", "rare", limit=1)]
    while pages[-1]:
        pages.append(await key_history(state, "busy", "rare", before=pages[-1][0].revision, limit=1))
    assert [c for p in pages for c in p] == full


@pytest.mark.motia_state_needs("changes")
async def test_history_of_a_key_taking_every_other_change(state: StateManager) -> None:
    for i in range(100):
        await state.set("alt", "k", i)
        await state.set("alt", "noise", i)
    # More than one read's worth of the scope's changes: each change exactly once, none skipped.
    for limit in (1000, 150, 100, 99, 50, 7):
        history = await key_history(state, "alt", "k", limit=limit)
        assert [c.new_value for c in history] == list(range(99, 99 - min(limit, 100), -1)), limit


@pytest.mark.motia_state_needs("changes")
async def test_history_values_keep_their_types(state: StateManager) -> None:
    values: list[Any] = [2**70, 1.0, 1, {}, [], "", True, {"a": [1, {"b": 0.5}]}]
    for v in values:
        await state.set("types", "k", v)
    history = await key_history(state, "types", "k")
    assert len(history) == len(values)
    for change, new, old in zip(history, values[::-1], [*values[::-1][1:], None], strict=True):
        assert_same(change.new_value, new)
        assert_same(change.old_value, old)
    # Fresh objects: changing one read changes no other.
    history[0].new_value["a"].append(2)
    assert (await key_history(state, "types", "k", limit=1))[0].new_value == {"a": [1, {"b": 0.5}]}


@pytest.mark.motia_state_needs("changes")
async def test_history_of_a_bulk_write_and_a_clear(state: StateManager) -> None:
    await state.set_many("bulk", {"a": 1, "b": 2})
    await state.set_many("bulk", {"a": 3})
    assert await state.delete_many("bulk", ["b"]) == 1
    await state.clear("bulk")
    assert _summary(await key_history(state, "bulk", "a")) == [
        ("deleted", "bulk", "a", 3, None),
        ("updated", "bulk", "a", 1, 3),
        ("created", "bulk", "a", None, 1),
    ]
    assert [c.event for c in await key_history(state, "bulk", "b")] == ["deleted", "created"]


@pytest.mark.motia_state_needs("changes", "ttl")
async def test_history_across_an_expiry(state: StateManager) -> None:
    await state.set("t", "k", {"v": 1}, ttl=0.1)
    await asyncio.sleep(0.3)
    await state.cleanup()
    await state.set("t", "k", {"v": 2})
    history = await key_history(state, "t", "k")
    first, *between, last = history[::-1]
    assert (first.event, first.new_value) == ("created", {"v": 1})
    assert [c.event for c in between] in ([], ["expired"])
    # The first write after an expiry starts the chain again.
    assert (last.event, last.old_value, last.new_value) == ("created", None, {"v": 2})


@pytest.mark.motia_state_needs("changes")
async def test_history_argument_checks(state: StateManager) -> None:
    await state.set("s", "k", 1)
    bad: Any
    for bad in (0, -1, True, 1.5, "3", None):
        with pytest.raises(StateValueError, match="limit"):
            await key_history(state, "s", "k", limit=bad)
    for bad in (-1, True, 1.5, "3"):
        with pytest.raises(StateValueError, match="before"):
            await key_history(state, "s", "k", before=bad)
    for bad in ("", 1, None, "a\x00"):
        with pytest.raises(StateKeyError):
            await key_history(state, bad, "k")
        with pytest.raises(StateKeyError):
            await key_history(state, "s", bad)
    assert len(await key_history(state, "s", "k", limit=10**30)) == 1


async def test_history_without_a_change_feed_raises_config_error(
    make_store: Any, motia_state_capabilities: frozenset[str]
) -> None:
    # A store that records changes, opened with changes: off; or one that records none (Redis layout motia).
    store = await (make_store(changes=False) if "changes" in motia_state_capabilities else make_store())
    try:
        await store.set("s", "k", 1)
        with pytest.raises(StateConfigError, match="changes"):
            await key_history(store, "s", "k")
    finally:
        await store.close()
