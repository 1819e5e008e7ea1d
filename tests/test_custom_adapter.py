"""SPEC §7: a user's adapter with only the reference's five methods works through StateManager."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from motia_state import StateAdapter, StateManager, ops


class FiveMethodAdapter(StateAdapter):
    """Like the reference's CustomStateAdapter; deliberately never calls super().__init__()."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Any] = {}

    async def get(self, scope: str, key: str) -> Any:
        await asyncio.sleep(0)  # a real backend yields here, which is what makes update racy
        return copy.deepcopy(self.data.get((scope, key)))

    async def set(self, scope: str, key: str, value: Any) -> None:
        await asyncio.sleep(0)
        self.data[(scope, key)] = copy.deepcopy(value)

    async def delete(self, scope: str, key: str) -> None:
        self.data.pop((scope, key), None)

    async def clear(self, scope: str) -> None:
        for k in [k for k in self.data if k[0] == scope]:
            del self.data[k]

    async def cleanup(self) -> None:
        return None


class SlottedAdapter(FiveMethodAdapter):
    __slots__ = ()


async def test_five_method_adapter_works() -> None:
    adapter = FiveMethodAdapter()
    state = StateManager(adapter)
    assert (await state.set("t", "booking", {"a": 1})).old_value is None
    assert (await state.set("t", "booking", {"a": 2})).old_value == {"a": 1}
    assert await state.get("t", "booking") == {"a": 2}
    result = await state.update("t", "booking", [ops.increment("a", 3)])
    assert result.new_value == {"a": 5}
    assert await state.get_many("t", ["booking", "nope"]) == {"booking": {"a": 5}}
    await state.set_many("t", {"x": 1, "y": 2})
    assert await state.delete_many("t", ["x", "zzz"]) == 1
    assert await state.delete("t", "booking") == {"a": 5}
    assert await state.ttl("t", "y") is None
    assert await state.clear("t") == 0  # the reference's clear() returns nothing to count
    assert await state.cleanup() == 0
    assert adapter.data == {}
    await state.close()


async def test_default_update_is_atomic_within_one_process() -> None:
    state = StateManager(FiveMethodAdapter())
    await asyncio.gather(*(state.update("t", "n", [ops.increment("n")]) for _ in range(100)))
    assert await state.get("t", "n") == {"n": 100}


async def test_adapter_without_instance_dict_still_updates() -> None:
    state = StateManager(SlottedAdapter())
    await asyncio.gather(*(state.update("t", "n", [ops.increment("n")]) for _ in range(20)))
    assert await state.get("t", "n") == {"n": 20}


async def test_missing_abilities_name_the_method_to_add() -> None:
    state = StateManager(FiveMethodAdapter())
    with pytest.raises(NotImplementedError, match=r"keys\(scope\)"):
        await state.keys("t")
    with pytest.raises(NotImplementedError, match=r"list_groups\(\)"):
        await state.list_groups()
    with pytest.raises(NotImplementedError, match="set_entry"):
        await state.set("t", "k", 1, ttl=5)


async def test_adapter_missing_a_reference_method_says_so() -> None:
    class Empty(StateAdapter):
        pass

    with pytest.raises(NotImplementedError, match=r"get\(scope, key\)"):
        await StateManager(Empty()).get("t", "k")


async def test_keys_enable_list_and_items() -> None:
    class WithKeys(FiveMethodAdapter):
        async def keys(self, scope: str) -> list[str]:
            return [k for s, k in self.data if s == scope]

        async def list_groups(self) -> list[str]:
            return sorted({s for s, _ in self.data})

    state = StateManager(WithKeys())
    await state.set_many("t", {"b": {"v": 2}, "a": {"v": 1}})
    assert await state.keys("t") == ["a", "b"]
    assert await state.list("t") == [{"v": 1}, {"v": 2}]
    assert [i.key for i in await state.items(filters=[{"path": "v", "op": "gt", "value": 1}])] == ["b"]
    assert await state.list_groups() == ["t"]


def test_manager_needs_an_adapter() -> None:
    with pytest.raises(TypeError):
        StateManager(object())  # type: ignore[arg-type]
