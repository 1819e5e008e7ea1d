"""One client span and one duration measurement per public operation, on every backend (SPEC §13)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from motia_state import StateManager, StateValueError, UpdateOpError

from .conftest import Telemetry

SYSTEMS = {"memory": "memory", "sqlite": "sqlite", "postgres": "postgresql", "redis": "redis"}
# Written by the tests below and looked for in every attribute: a key or a value must never be sent.
SECRET_KEY = "key-9f1c"
SECRET_VALUE = "value-7d2e"


def operations(scope: str) -> list[tuple[str, Callable[[StateManager], Awaitable[Any]]]]:
    """Every public operation, called once each (in an order where each finds what it needs)."""
    return [
        ("set", lambda s: s.set(scope, SECRET_KEY, {"secret": SECRET_VALUE})),
        ("get", lambda s: s.get(scope, SECRET_KEY)),
        ("update", lambda s: s.update(scope, SECRET_KEY, [{"type": "set", "path": "n", "value": 1}])),
        ("ttl", lambda s: s.ttl(scope, SECRET_KEY)),
        ("list", lambda s: s.list(scope)),
        ("get_group", lambda s: s.get_group(scope)),
        ("keys", lambda s: s.keys(scope)),
        ("list_groups", lambda s: s.list_groups()),
        ("items", lambda s: s.items(scope)),
        ("get_many", lambda s: s.get_many(scope, [SECRET_KEY])),
        ("set_many", lambda s: s.set_many(scope, {SECRET_KEY + "2": SECRET_VALUE})),
        ("delete_many", lambda s: s.delete_many(scope, [SECRET_KEY + "2"])),
        ("revision", lambda s: s.revision(scope)),
        ("delete", lambda s: s.delete(scope, SECRET_KEY)),
        ("clear", lambda s: s.clear(scope)),
        ("cleanup", lambda s: s.cleanup()),
    ]


def _no_secret(attributes: Any) -> None:
    for name, value in dict(attributes or {}).items():
        assert SECRET_KEY not in str(value) and SECRET_VALUE not in str(value), (name, value)


async def test_every_operation_makes_one_client_span(backend: str, open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    scope = f"trace-{uuid.uuid4().hex[:8]}"
    otel.clear()
    for op, call in operations(scope):
        await call(state)
        spans = otel.spans()
        assert [s.name for s in spans] == [f"{op} {spans[0].attributes['db.collection.name']}"], op
        span = spans[0]
        assert span.kind == SpanKind.CLIENT
        assert span.status.status_code == StatusCode.UNSET
        attrs = dict(span.attributes or {})
        assert attrs["db.system.name"] == SYSTEMS[backend]
        assert attrs["db.operation.name"] == op
        assert attrs["db.collection.name"]
        assert "motia_state.scope" not in attrs
        assert "error.type" not in attrs
        if backend in ("postgres", "redis"):
            assert attrs["server.address"] == "127.0.0.1"
            assert attrs["server.port"] == (5432 if backend == "postgres" else 6379)
        else:
            assert "server.address" not in attrs
        _no_secret(attrs)
        for event in span.events:
            _no_secret(event.attributes)
        otel.clear()


async def test_collection_names_the_table_or_the_key_prefix(backend: str, open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    await state.get("s", "k")
    (span,) = otel.spans()
    expected = {"memory": "motia_state", "sqlite": "motia_state", "postgres": "motia_state"}
    if backend == "redis":
        assert span.attributes["db.collection.name"] == state.adapter.key_prefix  # type: ignore[attr-defined]
    else:
        assert span.attributes["db.collection.name"] == expected[backend]
    assert span.name == f"get {span.attributes['db.collection.name']}"


async def test_scope_only_with_telemetry_scopes_on(backend: str, open_store: Any, otel: Telemetry) -> None:
    state = await open_store(telemetry_scopes=True)
    assert state.telemetry_scopes
    await state.set("trace-42", "k", 1)
    await state.list_groups()
    first, second = otel.spans()
    assert first.attributes["motia_state.scope"] == "trace-42"
    assert "motia_state.scope" not in second.attributes  # list_groups has no scope
    # ...and never on the metric (scopes are usually trace ids: one series each).
    for point in otel.points("db.client.operation.duration"):
        assert "motia_state.scope" not in point.attributes


async def test_a_failed_operation_says_its_error_type(backend: str, open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    await state.set("s", SECRET_KEY, {"n": SECRET_VALUE})
    otel.clear()
    with pytest.raises(UpdateOpError):
        await state.update("s", SECRET_KEY, [{"type": "increment", "path": "n", "by": 1}])
    (span,) = otel.spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "motia_state.errors.UpdateOpError"
    # The message quotes the key: neither the status nor an event may carry it.
    assert not span.status.description
    _no_secret(span.attributes)
    assert not span.events
    failed = [p for p in otel.points("db.client.operation.duration") if p.attributes.get("error.type")]
    assert [p.attributes["db.operation.name"] for p in failed] == ["update"]
    assert failed[0].attributes["error.type"] == "motia_state.errors.UpdateOpError"


async def test_argument_errors_are_inside_the_span(open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    with pytest.raises(StateValueError):
        await state.set("s", "k", {1, 2})
    (span,) = otel.spans()
    assert span.attributes["error.type"] == "motia_state.errors.StateValueError"


async def test_duration_metric_per_operation(backend: str, open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    for i in range(3):
        await state.set("s", f"k{i}", i)
    await state.get("s", "k0")
    points = {p.attributes["db.operation.name"]: p for p in otel.points("db.client.operation.duration")}
    assert points["set"].count == 3
    assert points["get"].count == 1
    assert points["set"].sum > 0
    attrs = dict(points["set"].attributes)
    assert attrs["db.system.name"] == SYSTEMS[backend]
    assert "error.type" not in attrs
    # The recommended buckets of the database conventions (seconds).
    assert tuple(points["set"].explicit_bounds)[:3] == (0.001, 0.005, 0.01)


async def test_spans_are_children_of_the_callers_span(open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("step") as parent:
        await state.set("s", "k", 1)
        await state.get("s", "k")
    ops = otel.spans(SpanKind.CLIENT)
    assert len(ops) == 2
    for span in ops:
        assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
        assert span.context.trace_id == parent.get_span_context().trace_id


async def test_an_alias_makes_one_span(open_store: Any, otel: Telemetry) -> None:
    state = await open_store()
    await state.get_group("s")
    assert [s.attributes["db.operation.name"] for s in otel.spans()] == ["get_group"]


async def test_concurrent_callers_each_get_their_own_span(backend: str, open_store: Any, otel: Telemetry) -> None:
    """The Postgres and SQLite batchers run many callers' writes as one statement: each caller still has a span."""
    state = await open_store()
    tracer = trace.get_tracer("test")

    async def caller(i: int) -> int:
        with tracer.start_as_current_span(f"caller-{i}") as span:
            await state.set("batch", f"k{i}", i)
            await state.get("batch", f"k{i}")
            return span.get_span_context().span_id

    parents = await asyncio.gather(*(caller(i) for i in range(64)))
    ops = otel.spans(SpanKind.CLIENT)
    assert len(ops) == 128
    by_parent: dict[int, list[str]] = {}
    for span in ops:
        assert span.parent is not None
        by_parent.setdefault(span.parent.span_id, []).append(str(span.attributes["db.operation.name"]))
    assert set(by_parent) == set(parents)
    assert all(sorted(v) == ["get", "set"] for v in by_parent.values())


async def test_no_provider_no_spans_and_no_instruments(open_store: Any) -> None:
    from motia_state import telemetry

    state = await open_store()
    await state.set("s", "k", 1)
    assert telemetry.current() is None


async def test_noop_providers_create_nothing(open_store: Any) -> None:
    from opentelemetry import metrics

    from motia_state import telemetry

    from .providers import reset_globals

    reset_globals()
    try:
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        metrics.set_meter_provider(metrics.NoOpMeterProvider())
        state = await open_store()
        await state.set("s", "k", 1)
        assert telemetry.current() is None
    finally:
        reset_globals()


async def test_a_provider_set_after_first_use_is_picked_up(open_store: Any) -> None:
    from motia_state import telemetry

    from .providers import reset_globals

    state = await open_store()
    await state.get("s", "k")
    assert telemetry.current() is None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_globals()
    try:
        trace.set_tracer_provider(provider)
        await state.get("s", "k")
        assert [s.attributes["db.operation.name"] for s in exporter.get_finished_spans()] == ["get"]
    finally:
        reset_globals()


async def test_a_meter_provider_alone_set_later_is_seen_at_the_next_connect(open_store: Any) -> None:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from .providers import reset_globals

    state = await open_store()
    await state.get("s", "k")
    reader = InMemoryMetricReader()
    reset_globals()
    try:
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        await state.close()
        await state.get("s", "k")  # reconnects, and sees the provider...
        await state.get("s", "k")  # ...which the calls from then on report to
        data = reader.get_metrics_data()
        assert data is not None
        names = [m.name for r in data.resource_metrics for sm in r.scope_metrics for m in sm.metrics]
        assert "db.client.operation.duration" in names
    finally:
        reset_globals()
