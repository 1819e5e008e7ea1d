"""Watches and triggers: a span per delivered or handled change, linked to the span of the write (SPEC §13)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from motia_state import Change
from motia_state.testing.contract.test_triggers import running  # holds the trigger before yielding

from .conftest import Telemetry


def _writes(otel: Telemetry, op: str) -> list[ReadableSpan]:
    return [s for s in otel.spans(SpanKind.CLIENT) if s.attributes["db.operation.name"] == op]


def _linked_to(span: ReadableSpan, writer: ReadableSpan) -> bool:
    return [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (writer.context.trace_id, writer.context.span_id)
    ]


async def test_a_watch_delivery_links_to_the_write(backend: str, open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    scope = f"w-{uuid.uuid4().hex[:8]}"
    async with state.watch(scope) as changes:
        await state.set(scope, "k", 1)
        await state.delete(scope, "k")
        first = await asyncio.wait_for(anext(changes), 10)
        second = await asyncio.wait_for(anext(changes), 10)
    assert (first.event, second.event) == ("created", "deleted")
    delivered = otel.spans(SpanKind.CONSUMER)
    assert len(delivered) == 2
    assert _linked_to(delivered[0], _writes(otel, "set")[0])
    assert _linked_to(delivered[1], _writes(otel, "delete")[0])
    attrs = dict(delivered[0].attributes or {})
    assert attrs["motia_state.change.event"] == "created"
    assert attrs["motia_state.change.revision"] == first.revision
    assert attrs["db.system.name"] == _writes(otel, "set")[0].attributes["db.system.name"]
    assert "motia_state.scope" not in attrs


async def test_an_untraced_write_gives_an_unlinked_delivery(open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    scope = f"u-{uuid.uuid4().hex[:8]}"
    from motia_state.telemetry import OPERATION

    async with state.watch(scope) as changes:
        token = OPERATION.set("")  # as if already inside an operation: the write makes no span of its own
        try:
            await state.set(scope, "k", 1)
        finally:
            OPERATION.reset(token)
        change = await asyncio.wait_for(anext(changes), 10)
    assert change.traceparent is None
    (delivered,) = otel.spans(SpanKind.CONSUMER)
    assert not delivered.links


async def test_a_trigger_handler_runs_in_a_span_linked_to_the_write(
    backend: str, open_store: Any, otel: Telemetry
) -> None:
    state = await open_store()
    scope = f"t-{uuid.uuid4().hex[:8]}"
    handled = asyncio.Event()
    inside: list[int] = []

    @state.on_change(f"links-{scope}", scope=scope, start="beginning", lease=3)
    async def handler(change: Change) -> None:
        inside.append(trace.get_current_span().get_span_context().span_id)
        await state.get(scope, "other")  # its span is a child of the handler's
        handled.set()

    tracer = trace.get_tracer("test")
    async with running(state):
        with tracer.start_as_current_span("a step"):
            await state.set(scope, "k", {"n": 1})
        await asyncio.wait_for(handled.wait(), 20)
    (write,) = _writes(otel, "set")
    handlers = [s for s in otel.spans(SpanKind.CONSUMER) if s.name == f"trigger links-{scope}"]
    assert len(handlers) == 1
    span = handlers[0]
    assert _linked_to(span, write)
    assert span.context.trace_id != write.context.trace_id  # its own trace, linked: not a child of the step
    assert inside == [span.context.span_id]
    attrs = dict(span.attributes or {})
    assert attrs["motia_state.trigger.name"] == f"links-{scope}"
    assert attrs["motia_state.trigger.attempt"] == 1
    assert attrs["motia_state.change.event"] == "created"
    gets = [s for s in _writes(otel, "get") if s.parent is not None and s.parent.span_id == span.context.span_id]
    assert len(gets) == 1
    lag = [
        p
        for p in otel.points("motia_state.trigger.lag")
        if p.attributes["motia_state.trigger.name"] == f"links-{scope}"
    ]
    assert lag and lag[0].count == 1 and lag[0].sum >= 0


async def test_a_failing_handler_marks_each_attempt_and_counts_the_parked_change(
    backend: str, open_store: Any, otel: Telemetry, monkeypatch: Any
) -> None:
    import motia_state.triggers as triggers

    monkeypatch.setattr(triggers, "MAX_BACKOFF", 0.01)
    state = await open_store()
    scope = f"p-{uuid.uuid4().hex[:8]}"
    name = f"parks-{scope}"
    attempts = 0

    @state.on_change(name, scope=scope, start="beginning", max_attempts=2, lease=3)
    def handler(change: Change) -> None:  # a plain function works too
        nonlocal attempts
        attempts += 1
        raise RuntimeError(f"no good: {change.new_value}")

    async with running(state):
        await state.set(scope, "k", "value-that-must-not-leak")
        for _ in range(400):
            if [
                p for p in otel.points("motia_state.trigger.parked") if p.attributes["motia_state.trigger.name"] == name
            ]:
                break
            await asyncio.sleep(0.05)
    spans = [s for s in otel.spans(SpanKind.CONSUMER) if s.name == f"trigger {name}"]
    assert [s.attributes["motia_state.trigger.attempt"] for s in spans] == [1, 2]
    for span in spans:
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes["error.type"] == "RuntimeError"
        assert not span.status.description and not span.events  # the message quotes a value
    (parked,) = [
        p for p in otel.points("motia_state.trigger.parked") if p.attributes["motia_state.trigger.name"] == name
    ]
    assert parked.value == 1
