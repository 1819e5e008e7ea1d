"""items(after=...) with users' adapters: old ``items`` overrides keep working, the default hook pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from motia_state import StateItem, StateManager
from motia_state.ops import Filter
from tests.test_custom_adapter import FiveMethodAdapter


class KeyedAdapter(FiveMethodAdapter):
    """The reference's five methods plus ``keys``/``list_groups``, so the default ``items`` can run."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def get(self, scope: str, key: str) -> Any:
        self.reads.append(key)
        return await super().get(scope, key)

    async def keys(self, scope: str) -> list[str]:
        return [k for s, k in self.data if s == scope]

    async def list_groups(self) -> list[str]:
        return sorted({s for s, _ in self.data})


class OldItemsAdapter(KeyedAdapter):
    """Overrides ``items`` with the signature from before paging existed (no ``after``)."""

    async def items(  # type: ignore[override]
        self, scope: str | None, filters: Sequence[Filter], limit: int | None
    ) -> list[StateItem]:
        rows = sorted((s, k, v) for (s, k), v in self.data.items() if scope is None or s == scope)
        return [StateItem(s, k, v, None) for s, k, v in rows][:limit]


class KwargsItemsAdapter(OldItemsAdapter):
    """Forwards any keyword, so ``after`` reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, **options: Any
    ) -> list[StateItem]:
        self.seen.append(options)
        found = await super().items(scope, filters, None)
        after = options.get("after")
        return [i for i in found if after is None or i.key > after][:limit]


async def _seed(state: StateManager) -> None:
    await state.set_many("s", {"b": 2, "a": 1, "c": 3, "😀": 4})
    await state.set("t", "x", 9)


async def test_old_items_override_still_serves_calls_without_after() -> None:
    state = StateManager(OldItemsAdapter())
    await _seed(state)
    assert [i.key for i in await state.items("s")] == ["a", "b", "c", "😀"]
    assert [i.key for i in await state.items("s", limit=2)] == ["a", "b"]
    assert [(i.scope, i.key) for i in await state.items()] == [
        ("s", "a"),
        ("s", "b"),
        ("s", "c"),
        ("s", "😀"),
        ("t", "x"),
    ]
    assert await state.list("s") == [1, 2, 3, 4]  # the default values() goes through items() too


async def test_old_items_override_asked_to_page_names_the_method_to_update() -> None:
    state = StateManager(OldItemsAdapter())
    await _seed(state)
    with pytest.raises(NotImplementedError, match=r"OldItemsAdapter\.items.*after=None"):
        await state.items("s", after="a")
    # The refusal changed nothing and later calls still work.
    assert [i.key for i in await state.items("s", limit=1)] == ["a"]


async def test_items_taking_any_keyword_gets_after() -> None:
    adapter = KwargsItemsAdapter()
    state = StateManager(adapter)
    await _seed(state)
    assert [i.key for i in await state.items("s", after="b")] == ["c", "😀"]
    assert adapter.seen == [{"after": "b"}]
    await state.items("s")
    assert adapter.seen[-1] == {}  # not passed when None


async def test_default_items_pages_and_reads_values_of_the_page_only() -> None:
    adapter = KeyedAdapter()
    state = StateManager(adapter)
    await _seed(state)
    adapter.reads.clear()
    page = await state.items("s", after="a", limit=2)
    assert [(i.key, i.value) for i in page] == [("b", 2), ("c", 3)]
    assert adapter.reads == ["b", "c"]  # "a" is skipped by name, "😀" is past the limit
    assert [i.key for i in await state.items("s", after="c")] == ["😀"]
    assert await state.items("s", after="😀") == []
    filtered = await state.items("s", after="a", filters=[{"path": "", "op": "gte", "value": 3}])
    assert [i.key for i in filtered] == ["c", "😀"]
