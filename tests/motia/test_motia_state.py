"""MotiaState on its own (no SDK needed): each protocol method delegates, with the protocol's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from motia_state import SetResult, StateManager, ops
from motia_state.motia import MotiaState, from_config, from_url, with_state


async def test_methods_delegate_with_protocol_results(store: MotiaState, manager: StateManager) -> None:
    assert await store.get("t1", "booking") is None
    first = await store.set("t1", "booking", {"seats": 1})
    assert isinstance(first, SetResult)  # the manager's result, passed through
    assert (first.old_value, first.new_value) == (None, {"seats": 1})
    second = await store.update("t1", "booking", [ops.increment("seats", 2), ops.set_("status", "held")])
    assert isinstance(second, SetResult)
    assert (second.old_value, second.new_value) == ({"seats": 1}, {"seats": 3, "status": "held"})
    await store.set("t1", "a", 1)
    await store.set("t2", "x", "y")
    assert await store.list("t1") == [1, {"seats": 3, "status": "held"}]  # ordered by key
    assert await store.list_groups() == ["t1", "t2"]
    assert await store.delete("t1", "a") == 1
    assert await store.delete("t1", "a") is None
    # The manager answers how many were removed; the protocol's clear answers nothing.
    assert await store.clear("t1") is None
    assert await manager.get("t1", "booking") is None
    assert await manager.list_groups() == ["t2"]
    assert store.manager is manager


def test_rejects_anything_but_a_state_manager() -> None:
    with pytest.raises(TypeError, match="needs a StateManager, got dict"):
        MotiaState({})  # type: ignore[arg-type]


async def test_from_url_and_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    store = from_url(url, ttl=60)
    assert isinstance(store, MotiaState)
    assert store.manager.default_ttl == 60
    assert "MotiaState(StateManager(" in repr(store)
    await store.set("s", "k", {"v": 1})
    await store.close()

    monkeypatch.chdir(tmp_path)  # no config.yml here: MOTIA_STATE_URL names the store
    monkeypatch.setenv("MOTIA_STATE_URL", url)
    again = from_config(ttl=30)
    try:
        assert await again.get("s", "k") == {"v": 1}
        assert again.manager.default_ttl == 30
        assert 0 < (await again.manager.ttl("s", "k") or 0) <= 60  # written by the first store, with its TTL
    finally:
        await again.close()


async def test_with_state_sets_ctx_state_on_every_call(manager: StateManager) -> None:
    class Ctx:
        state: Any = "engine's"

    seen: list[Any] = []

    async def step_handler(data: int, ctx: Ctx) -> int:
        """Doc kept."""
        seen.append(ctx.state)
        await ctx.state.set("s", "n", data)
        return data + 1

    handler = with_state(manager)(step_handler)  # a bare StateManager is wrapped
    first, second = Ctx(), Ctx()
    assert await handler(1, first) == 2
    assert await handler(5, second) == 6
    assert handler.__name__ == "step_handler"
    assert handler.__doc__ == "Doc kept."
    assert all(isinstance(s, MotiaState) and s.manager is manager for s in seen)
    assert first.state is second.state
    assert await manager.get("s", "n") == 5

    view = MotiaState(manager)
    third = Ctx()
    await with_state(view)(step_handler)(0, third)
    assert third.state is view
