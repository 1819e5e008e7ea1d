"""The browse hooks' defaults (``StateAdapter.scopes_page``/``key_history``) meet the browse contract.

The built-in backends all override both, so an adapter that has everything else but these two (the memory
backend with its overrides taken away) runs the contract suite's browse tests on the defaults.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from motia_state import ChangesCompactedError, StateAdapter, StateManager
from motia_state.backends.memory import MemoryAdapter
from motia_state.browse import key_history, scope_page
from motia_state.testing import ALL_CAPABILITIES, StoreFactory, make_store, state
from motia_state.testing.contract.test_browse import *  # noqa: F403

__all__ = ["make_store", "state"]  # the plugin's fixtures, over the root conftest's four-backend ones


class DefaultBrowseAdapter(MemoryAdapter):
    """Memory, but browsing through the base class's defaults."""

    scopes_page = StateAdapter.scopes_page
    key_history = StateAdapter.key_history


@pytest.fixture
def motia_state_factory() -> StoreFactory:
    async def make(tmp_path: Path, **options: Any) -> StateManager:
        changes = options.pop("changes", True)
        retention = options.pop("changes_retention", 86400.0)
        return StateManager(DefaultBrowseAdapter(changes=changes, changes_retention=retention), **options)

    return make


@pytest.fixture
def motia_state_capabilities() -> frozenset[str]:
    return ALL_CAPABILITIES


async def test_default_history_steps_over_compacted_changes() -> None:
    state = StateManager(DefaultBrowseAdapter(changes_retention=0.2))
    await state.set("s", "k", 1)
    await state.set("s", "k", 2)
    await asyncio.sleep(0.4)
    await state.cleanup()  # compacts both changes away
    await state.set("s", "k", 3)
    with pytest.raises(ChangesCompactedError):
        await state.adapter.changes_after("s", "k", 0, 10, 0.0)
    # The history is what is kept: no error, the compacted changes simply absent.
    assert [(c.old_value, c.new_value) for c in await key_history(state, "s", "k")] == [(2, 3)]


async def test_default_history_reads_past_a_batch() -> None:
    state = StateManager(DefaultBrowseAdapter())
    for i in range(1203):  # more than two of the default's batches of changes
        await state.set("s", "k", i)
        await state.set("s", "other", i)
    history = await key_history(state, "s", "k", limit=5000)
    assert [c.new_value for c in history] == list(range(1202, -1, -1))
    assert [c.new_value for c in await key_history(state, "s", "k", before=history[600].revision, limit=3)] == [
        601,
        600,
        599,
    ]


class SloppyAdapter(MemoryAdapter):
    """A custom override reporting a scope twice and out of order."""

    async def scopes_page(self, after: str | None, limit: int, search: str | None) -> list[str]:
        found = await StateAdapter.scopes_page(self, after, limit, search)
        return [*found[::-1], *found]


async def test_a_page_never_repeats_a_scope_whatever_the_adapter_reports() -> None:
    state = StateManager(SloppyAdapter())
    for s in ["b", "a", "c"]:
        await state.set(s, "k", 1)
    assert await scope_page(state) == ["a", "b", "c"]
    assert await scope_page(state, limit=2) == ["a", "b"]


class NoFeedAdapter(DefaultBrowseAdapter):
    """Listing but no change feed at all: the base class's changes_after."""

    changes_after = StateAdapter.changes_after


async def test_default_history_of_a_store_without_changes_names_what_to_add() -> None:
    state = StateManager(NoFeedAdapter())
    await state.set("s", "k", 1)
    with pytest.raises(NotImplementedError, match="changes_after"):
        await key_history(state, "s", "k")
