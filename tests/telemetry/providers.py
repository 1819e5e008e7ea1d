"""Putting OpenTelemetry's global providers back to "none set" (test-only: the API allows one set per process)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.metrics import _internal as metrics_state
from opentelemetry.util._once import Once


def reset_globals() -> None:
    """Forget the global tracer and meter providers, as OpenTelemetry's own tests do."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_state._METER_PROVIDER_SET_ONCE = Once()
    metrics_state._METER_PROVIDER = None
