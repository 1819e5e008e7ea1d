"""Motia steps run by the real SDK (motia 1.0.2rc1 on iii-sdk 0.8.3) with ``ctx.state`` set to our store.

Each test registers a step with ``motia.Motia().add_step``, as a Motia app does, and has the ``engine``
fixture invoke the registered function, so the SDK builds the FlowContext and calls the handler itself.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.motia import MotiaState, with_state
from tests.motia.conftest import Engine


def add_step(sdk: ModuleType, name: str, trigger: Any, handler: Any) -> None:
    definition = sdk.step({"name": name, "triggers": [trigger]}, handler)
    sdk.Motia().add_step(definition, f"steps/{name}_step.py")


async def test_queue_step_does_every_state_call(
    sdk: ModuleType, engine: Engine, store: MotiaState, manager: StateManager
) -> None:
    ops = importlib.import_module("iii.stream")  # the SDK's own update operation models

    @with_state(store)
    async def handler(data: dict[str, Any], ctx: Any) -> dict[str, Any]:
        scope = ctx.trace_id
        created = await ctx.state.set(scope, "booking", data)
        updated = await ctx.state.update(
            scope,
            "booking",
            [
                ops.UpdateIncrement(path="seats", by=2).model_dump(),
                ops.UpdateSet(path="status", value="held").model_dump(),
            ],
        )
        await ctx.state.set(scope, "note", "call back")
        await ctx.state.set("venues", "hall-a", {"open": True})
        return {
            "context": type(ctx).__name__,
            "trigger": ctx.trigger.type,
            "scope": scope,
            "created": [created["old_value"], created["new_value"]],
            "updated": dict(updated),
            "get": await ctx.state.get(scope, "booking"),
            "get_missing": await ctx.state.get(scope, "nothing"),
            "list": await ctx.state.list(scope),
            "groups": await ctx.state.list_groups(),
            "deleted": await ctx.state.delete(scope, "note"),
            "deleted_again": await ctx.state.delete(scope, "note"),
            "cleared": await ctx.state.clear(scope),
            "after_clear": await ctx.state.list(scope),
        }

    add_step(sdk, "book", sdk.queue("book"), handler)
    function_id = "steps::book::trigger::queue(book)"
    assert engine.function_ids() == [function_id]

    result = await engine.invoke(function_id, {"venue": "Hall A", "seats": 1})

    scope = result["scope"]
    booking = {"venue": "Hall A", "seats": 3, "status": "held"}
    assert result == {
        "context": "FlowContext",
        "trigger": "queue",
        "scope": scope,
        "created": [None, {"venue": "Hall A", "seats": 1}],
        "updated": {"old_value": {"venue": "Hall A", "seats": 1}, "new_value": booking},
        "get": booking,
        "get_missing": None,
        "list": [booking, "call back"],  # ordered by key: booking, note
        "groups": sorted([scope, "venues"]),
        "deleted": "call back",
        "deleted_again": None,
        "cleared": None,
        "after_clear": [],
    }
    # The step wrote to our store, not to the engine's.
    assert await manager.list_groups() == ["venues"]
    assert await manager.get("venues", "hall-a") == {"open": True}


@pytest.mark.parametrize("kind", ["cron", "state", "stream"])
async def test_other_triggers_get_the_store(
    sdk: ModuleType, engine: Engine, store: MotiaState, manager: StateManager, kind: str
) -> None:
    triggers = {
        "cron": (sdk.cron("0 * * * * *"), "cron(0 * * * * *)", None),
        "state": (sdk.state(), "state", {"type": "state", "group_id": "g", "item_id": "i", "new_value": 1}),
        "stream": (sdk.stream("rooms"), "stream(rooms)", {"type": "stream", "streamName": "rooms"}),
    }
    trigger, suffix, data = triggers[kind]

    @with_state(store)
    async def handler(data: Any, ctx: Any) -> dict[str, Any]:
        written = await ctx.state.set("runs", ctx.trigger.type, data)
        return {"is_ours": ctx.state is store, "new_value": written["new_value"]}

    add_step(sdk, f"on-{kind}", trigger, handler)
    result = await engine.invoke(f"steps::on-{kind}::trigger::{suffix}", data)

    assert result == {"is_ours": True, "new_value": data}
    assert await manager.get("runs", kind) == data


async def test_without_with_state_ctx_state_is_the_engines(sdk: ModuleType, engine: Engine) -> None:
    # Why the decorator exists: the SDK gives every context its own engine-backed manager.
    async def handler(data: Any, ctx: Any) -> dict[str, Any]:
        return {"is_sdk_manager": ctx.state is sdk.stateManager, "type": type(ctx.state).__module__}

    add_step(sdk, "plain", sdk.queue("plain"), handler)
    result = await engine.invoke("steps::plain::trigger::queue(plain)", {})
    assert result == {"is_sdk_manager": True, "type": "motia.state"}


async def test_replacing_the_runtimes_manager_reaches_every_step(
    sdk: ModuleType, engine: Engine, store: MotiaState, manager: StateManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process-wide alternative docs/motia.md describes: motia.runtime reads this name on every invocation.
    monkeypatch.setattr(importlib.import_module("motia.runtime"), "stateManager", store)

    async def handler(data: Any, ctx: Any) -> Any:
        return (await ctx.state.set("global", "k", data))["new_value"]

    add_step(sdk, "undecorated", sdk.queue("undecorated"), handler)
    assert await engine.invoke("steps::undecorated::trigger::queue(undecorated)", [1, 2]) == [1, 2]
    assert await manager.get("global", "k") == [1, 2]


async def test_flow_context_built_by_hand_takes_the_store(sdk: ModuleType, store: MotiaState) -> None:
    # For unit-testing a handler without the runtime: the SDK's context model accepts the store directly.
    seen: list[Any] = []

    async def on_queue(data: Any) -> None:
        seen.append(await ctx.state.set("hand", "k", data))

    async def enqueue(event: Any) -> None:
        raise AssertionError("not used")

    ctx = sdk.FlowContext(
        enqueue=enqueue,
        trace_id="t-1",
        state=store,
        logger=importlib.import_module("iii").Logger(),
        trigger=sdk.TriggerInfo(type="queue"),
        input_value={"n": 1},
    )
    await ctx.match({"queue": on_queue})
    assert ctx.state is store
    assert seen[0]["new_value"] == {"n": 1}
    assert await store.get("hand", "k") == {"n": 1}
