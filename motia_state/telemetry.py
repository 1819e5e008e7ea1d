"""OpenTelemetry for motia-state (SPEC §13): a client span and a duration metric per public operation, a span per
change delivered by a watch or handled by a trigger (linked to the span that wrote it), trigger metrics.

Only ``opentelemetry-api`` is used (extra ``motia-state[otel]``); the SDK, exporters and sampling are the
application's choice. Without the package, or while no tracer or meter provider is configured, an operation
pays one attribute comparison and creates nothing.

What goes out: the operation, the backend, the table (or Redis key prefix), the server, the error's type.
Never a value, a key, a password or an error message (messages quote keys and values); the scope only with
``telemetry_scopes: on``, and never as a metric attribute (scopes are usually trace ids: unbounded).
"""

from __future__ import annotations

import functools
import inspect
import time
import types
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

__all__ = [
    "API",
    "OPERATION",
    "SEEN",
    "TRACES",
    "Described",
    "Instruments",
    "current",
    "link_of",
    "run_handler",
    "traceparent_of",
]

T = TypeVar("T")
C = TypeVar("C")


class Change(Protocol):
    """What telemetry reads of a :class:`motia_state.Change` (a protocol: the change feed imports this module)."""

    @property
    def revision(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def traceparent(self) -> str | None: ...


#: Inside a traced operation: the W3C ``traceparent`` of its span ('' when the span has no valid context);
#: None outside any traced operation. Adapters that record changes read it in the calling task and store it
#: with the change, so the trigger handler's span can link to the write.
OPERATION: Final[ContextVar[str | None]] = ContextVar("motia_state_operation", default=None)

#: OpenTelemetry's recommended buckets for ``db.client.operation.duration`` (seconds).
DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
#: Buckets of ``motia_state.trigger.lag`` (seconds from commit to handler start).
LAG_BUCKETS: Final = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0)

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.metrics import _internal as _metrics_state
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
except ImportError:  # the extra is not installed: every hook below stays off
    API: Final[bool] = False
else:
    API = True  # type: ignore[misc]


class Seen:
    """What the manager's per-operation check compares the API's global tracer provider with.

    The API keeps the providers in module globals; an operation compares the tracer provider with ``tracer``
    (one comparison, inlined in the manager: a call would cost more). While nothing collects, that is the
    provider seen last, so the comparison fails and the operation goes on untouched; while something
    collects, it is a marker no provider is, so the operation asks :func:`current` for the instruments.
    A meter provider set later without a tracer provider is noticed at the store's next connect (and by any
    :func:`current` call); both are usually set once at start-up. Without the API, the stand-in below holds
    None and so does ``tracer``: the same comparison, always equal. get_tracer_provider() itself reads
    os.environ on every call while no provider is set (0.7 µs, a third of a memory get): it is called only
    when the globals moved.
    """

    __slots__ = ("instruments", "seen_meter", "seen_tracer", "tracer")

    def __init__(self) -> None:
        unseen = () if API else None  # () is never a provider: the first operation refreshes
        self.tracer: object = unseen
        self.seen_tracer: object = unseen  # the providers the instruments were made for
        self.seen_meter: object = unseen
        self.instruments: Instruments | None = None


# Without the API: a module whose provider globals are never set (a module, like the API's own, so that the
# manager's check reads it as cheaply).
_absent = types.ModuleType("motia_state._no_opentelemetry")
_absent._TRACER_PROVIDER = None  # type: ignore[attr-defined]
_absent._METER_PROVIDER = None  # type: ignore[attr-defined]
_COLLECTING: Final = object()
SEEN: Final = Seen()
#: The API's modules holding the global providers (stand-ins without the API).
TRACES: Any = _trace if API else _absent
METERS: Any = _metrics_state if API else _absent


def current() -> Instruments | None:
    """The instruments of the configured providers, or None when neither traces nor metrics are collected."""
    if not API:
        return None
    if TRACES._TRACER_PROVIDER is SEEN.seen_tracer and METERS._METER_PROVIDER is SEEN.seen_meter:
        return SEEN.instruments
    return _refresh()


def _refresh() -> Instruments | None:
    # The public getters load a provider named by OTEL_PYTHON_TRACER_PROVIDER / _METER_PROVIDER on first call.
    tp = _trace.get_tracer_provider()
    mp = _metrics.get_meter_provider()
    tracer: Any = None
    if not isinstance(tp, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
        tracer = tp.get_tracer("motia_state", _version())
        if isinstance(tracer, _trace.NoOpTracer):  # e.g. the SDK with OTEL_SDK_DISABLED=true
            tracer = None
    meter: Any = None
    proxy = getattr(_metrics_state, "_ProxyMeterProvider", ())
    if not isinstance(mp, _metrics.NoOpMeterProvider | proxy):
        meter = mp.get_meter("motia_state", _version())
        if isinstance(meter, _metrics.NoOpMeter):
            meter = None
    instruments = Instruments(tracer, meter) if tracer is not None or meter is not None else None
    # Re-read: the getters may have just set the globals (a provider named in the environment).
    SEEN.seen_tracer, SEEN.seen_meter = _trace._TRACER_PROVIDER, _metrics_state._METER_PROVIDER
    SEEN.instruments = instruments
    SEEN.tracer = SEEN.seen_tracer if instruments is None else _COLLECTING
    return instruments


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("motia-state")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0"


def traceparent_of(span: Any) -> str:
    """The W3C traceparent of ``span`` ('' when its context is invalid)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def link_of(traceparent: str | None) -> Any:
    """A span link to the span that ``traceparent`` names, or None when it names none (or is malformed)."""
    if not API or not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return Link(ctx) if ctx.is_valid else None


def error_type(exc: BaseException) -> str:
    """``error.type``: the exception's fully qualified class name (never its message)."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


class Instruments:
    """A tracer and a meter (either may be None) with the instruments motia-state records."""

    def __init__(self, tracer: Any, meter: Any) -> None:
        self.tracer = tracer
        self.duration: Any = None
        self.lag: Any = None
        self.parked: Any = None
        if meter is not None:
            self.duration = meter.create_histogram(
                "db.client.operation.duration",
                unit="s",
                description="Duration of motia-state operations.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self.lag = meter.create_histogram(
                "motia_state.trigger.lag",
                unit="s",
                description="Time from a change's commit to the start of its trigger handler.",
                explicit_bucket_boundaries_advisory=LAG_BUCKETS,
            )
            self.parked = meter.create_counter(
                "motia_state.trigger.parked",
                unit="{change}",
                description="Changes parked after their trigger handler failed every attempt.",
            )

    async def operation(self, op: str, store: Described, scope: object, work: Awaitable[T]) -> T:
        """Await ``work`` (the operation's own body) inside its client span, and record its duration."""
        name, attributes = store.operation(op)
        span: Any = None
        detach: Any = None
        parent = ""
        if self.tracer is not None:
            span_attributes = attributes
            if store.scopes and type(scope) is str:
                span_attributes = {**attributes, "motia_state.scope": scope}
            span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=span_attributes)
            parent = traceparent_of(span)
            detach = _context.attach(_trace.set_span_in_context(span))
        token = OPERATION.set(parent)
        started = time.perf_counter()
        failure: str | None = None
        try:
            return await work
        except BaseException as exc:
            failure = error_type(exc)
            if span is not None:
                _mark_failed(span, failure)
            raise
        finally:
            elapsed = time.perf_counter() - started
            OPERATION.reset(token)
            if span is not None:
                _context.detach(detach)
                span.end()
            if self.duration is not None:
                self.duration.record(elapsed, attributes if failure is None else {**attributes, "error.type": failure})

    def _consumer_span(self, name: str, attributes: Mapping[str, Any], change: Change) -> Any:
        link = link_of(change.traceparent)
        return self.tracer.start_span(
            name, kind=SpanKind.CONSUMER, attributes=attributes, links=[link] if link is not None else None
        )

    def delivered(self, store: Described, change: Change) -> None:
        """A span for a change a watch delivers: ended at once, linked to the span that wrote the change."""
        if self.tracer is not None:
            self._consumer_span(store.watch_name, store.change(change), change).end()

    def handling(self, store: Described, trigger: str, change: Change, attempt: int) -> Any:
        """Start the span of one handler attempt (and record the lag on the first); the caller ends it."""
        if attempt == 1 and self.lag is not None:
            self.lag.record(max(0.0, time.time() - change.at.timestamp()), store.trigger(trigger))
        if self.tracer is None:
            return None
        attributes = store.change(change)
        attributes["motia_state.trigger.name"] = trigger
        attributes["motia_state.trigger.attempt"] = attempt
        return self._consumer_span(f"trigger {trigger}", attributes, change)

    def count_parked(self, store: Described, trigger: str) -> None:
        """One more change parked by ``trigger``."""
        if self.parked is not None:
            self.parked.add(1, store.trigger(trigger))


class Described:
    """What every span and metric of one store says about it (its adapter's telemetry attributes), and whether
    spans may carry the scope (``telemetry_scopes``). The attribute sets are built once, not per call."""

    __slots__ = ("_changes", "_operations", "attributes", "scopes", "watch_name")

    def __init__(self, attributes: Mapping[str, str | int], scopes: bool) -> None:
        self.attributes = dict(attributes)
        self.scopes = scopes
        target = self.attributes.get("db.collection.name")
        self.watch_name = f"watch {target or 'motia_state'}"
        # A change's spans describe the store, not the connection that carried it.
        self._changes = {k: v for k, v in self.attributes.items() if not k.startswith("server.")}
        self._operations: dict[str, tuple[str, dict[str, Any]]] = {}

    def operation(self, op: str) -> tuple[str, dict[str, Any]]:
        """The span name and the attributes (span and metric alike) of operation ``op``; never to be mutated."""
        found = self._operations.get(op)
        if found is None:
            target = self.attributes.get("db.collection.name")
            found = (f"{op} {target}" if target else op, {**self.attributes, "db.operation.name": op})
            self._operations[op] = found
        return found

    def change(self, change: Change) -> dict[str, Any]:
        """The attributes of a span about ``change`` (a new dict, the caller's to extend)."""
        out = {
            **self._changes,
            "motia_state.change.event": change.event,
            "motia_state.change.revision": change.revision,
        }
        if self.scopes:
            out["motia_state.scope"] = change.scope
        return out

    def trigger(self, trigger: str) -> dict[str, Any]:
        """The attributes of a trigger metric."""
        return {"db.system.name": self.attributes.get("db.system.name", ""), "motia_state.trigger.name": trigger}


def _mark_failed(span: Any, failure: str) -> None:
    # The class only: an error's message quotes keys and values.
    span.set_attribute("error.type", failure)
    span.set_status(Status(StatusCode.ERROR))


async def run_handler(span: Any, handler: Callable[[C], Any], change: C) -> None:
    """Run a trigger ``handler`` (sync or async) with ``span``, if any, current: the handler's own spans become its
    children; the span is ended."""
    token = None if span is None else _context.attach(_trace.set_span_in_context(span))
    try:
        result = handler(change)
        if inspect.isawaitable(result):
            await result
    except BaseException as exc:
        if span is not None:
            _mark_failed(span, error_type(exc))
        raise
    finally:
        if token is not None:
            _context.detach(token)
            span.end()
