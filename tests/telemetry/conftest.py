"""The OpenTelemetry SDK wired to in-memory readers for one test, and a store on each of the four backends.

OpenTelemetry lets an application set its global providers once per process; a test sets them and puts the
"nothing set" state back afterwards (as OpenTelemetry's own tests do), so every other test runs without a
provider, the way most applications do.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the telemetry tests need opentelemetry-sdk (pip install -e '.[dev]')")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from motia_state import StateManager
from tests.services import require, shared_store_url

from .providers import reset_globals

BACKENDS = ("memory", "sqlite", "postgres", "redis")
REDIS_URL = "redis://127.0.0.1:6379/12"
_PG_PREFIX = "motia_state_otel_"


@dataclass
class Telemetry:
    """What the SDK collected during one test."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self, kind: trace.SpanKind | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if kind is None or s.kind == kind]

    def clear(self) -> None:
        self.exporter.clear()

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name`` collected so far."""
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """Global tracer and meter providers of the SDK, collecting in memory, for this test only."""
    reset_globals()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    try:
        yield Telemetry(exporter, reader, tracer_provider)
    finally:
        reset_globals()


@pytest.fixture(scope="session")
def pg_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Postgres database for the telemetry tests (dropped at the end)."""
    with shared_store_url("postgres", tmp_path_factory.mktemp("pg"), redis_url=REDIS_URL, pg_prefix=_PG_PREFIX) as url:
        yield url


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if backend == "memory":
        return "memory://", {}
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}", {}
    if backend == "postgres":
        return request.getfixturevalue("pg_database"), {}
    require("redis")
    return REDIS_URL, {"key_prefix": f"otel:{uuid.uuid4().hex[:12]}:"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """The URL and options of a fresh store of this test's backend."""
    return store_url(backend, tmp_path, request)


@pytest.fixture
async def open_store(backend: str, location: tuple[str, dict[str, Any]]) -> AsyncIterator[Any]:
    """``open_store(**options)``: a connected store of this test's backend (closed afterwards)."""
    url, base = location
    opened: list[StateManager] = []

    async def open_(**options: Any) -> StateManager:
        state = StateManager.from_url(url, **{**base, **options})
        await state.connect()
        opened.append(state)
        return state

    yield open_
    for state in opened:
        await state.close()
    if backend == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"{base['key_prefix']}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
