"""pytest support: a ready ``state`` fixture for your own tests, and motia-state's contract suite for your adapter.

In a ``conftest.py``::

    pytest_plugins = ["motia_state.testing"]

gives every test a fresh ``state`` (a :class:`StateManager` on ``memory://``, closed afterwards) and
``make_store(**options)`` for another one. To run the behaviour tests every built-in backend passes against
your own adapter, override the factory and import the suite into a test module::

    # conftest.py
    @pytest.fixture
    def motia_state_factory():
        async def make(tmp_path, **options):
            return StateManager(MyAdapter(), **options)
        return make

    @pytest.fixture
    def motia_state_capabilities():
        return ALL_CAPABILITIES - {"ttl"}      # what the adapter cannot do: those tests are skipped

    # test_my_adapter.py
    from motia_state.testing.contract import *  # noqa: F403

The tests are async (pytest-asyncio, installed with ``motia-state[testing]``). A test that needs an
ability carries ``@pytest.mark.motia_state_needs("ttl", ...)``; see :data:`ALL_CAPABILITIES`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio

from ..manager import StateManager

__all__ = ["ALL_CAPABILITIES", "StoreFactory"]

StoreFactory = Callable[..., Awaitable[StateManager]]

#: ``ttl``: writes with a ttl and expiry; ``listing``: keys/list/items/list_groups; ``counts``: clear reports
#: how many entries it removed; ``cleanup_counts``: cleanup() does too (a store whose server drops expired
#: entries by itself has none to count); ``null``: a stored null is told apart from no entry; ``changes``:
#: the change feed (``watch``, ``revision``, SPEC §10); ``triggers``: durable triggers (``adapter.trigger_store()``,
#: SPEC §11).
ALL_CAPABILITIES: Final = frozenset(
    {"ttl", "listing", "counts", "cleanup_counts", "null", "changes", "changes_all_scopes", "triggers"}
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the capability mark."""
    config.addinivalue_line(
        "markers", "motia_state_needs(*capabilities): skip unless the store under test has these capabilities"
    )


@pytest.fixture
def motia_state_factory() -> StoreFactory:
    """``async (tmp_path, **options) -> StateManager``: the store under test. Default: ``memory://``."""

    async def make(tmp_path: Path, **options: Any) -> StateManager:
        return StateManager.from_url("memory://", **options)

    return make


@pytest.fixture
def motia_state_capabilities() -> frozenset[str]:
    """What the store under test can do (default: everything)."""
    return ALL_CAPABILITIES


@pytest.fixture
def make_store(motia_state_factory: StoreFactory, tmp_path: Path) -> Callable[..., Awaitable[StateManager]]:
    """Build another store like the one under test (same database or file), e.g. with other options."""

    async def make(**options: Any) -> StateManager:
        return await motia_state_factory(tmp_path, **options)

    return make


@pytest_asyncio.fixture
async def state(make_store: Callable[..., Awaitable[StateManager]]) -> AsyncIterator[StateManager]:
    """A fresh, empty store, closed after the test."""
    store = await make_store()
    try:
        yield store
    finally:
        await store.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """For a store declaring missing capabilities, a NotImplementedError from one of its hooks is a skip.

    Only then: a built-in store (every capability) that raised it fails as usual.
    """
    try:
        return (yield)
    except NotImplementedError as exc:
        have = getattr(item, "funcargs", {}).get("motia_state_capabilities")
        if have is None or have >= ALL_CAPABILITIES:
            raise
        pytest.skip(f"the store under test lacks this ability ({exc})")


@pytest.fixture(autouse=True)
def _motia_state_needs(request: pytest.FixtureRequest, motia_state_capabilities: frozenset[str]) -> None:
    needed = {c for marker in request.node.iter_markers("motia_state_needs") for c in marker.args}
    missing = sorted(needed - motia_state_capabilities)
    if missing:
        pytest.skip(f"the store under test lacks {', '.join(missing)}")
