"""``python -m bench.telemetry``: what OpenTelemetry costs motia-state, per backend (SPEC §13).

The same ``get``/``set`` workloads (c=1 and c=16) in four situations:

- ``off``: ``opentelemetry`` cannot be imported (the package is not installed): the baseline;
- ``api``: the API is installed, no provider is configured (the usual case: a dependency pulled it in);
- ``noop``: the API's no-op tracer and meter providers are set;
- ``sdk``: the SDK with a production pipeline: a BatchSpanProcessor and a periodic metric reader whose
  exporters encode every batch to OTLP protobuf bytes, as the OTLP exporters do, and drop them instead of
  sending them (the network is the collector's cost, not ours).

Two measurements, because processes differ from each other by more than the cost being measured:

- **A/B in one process** (``off``, ``api``, ``noop``): ``StateManager`` against the same class with its
  per-operation telemetry check taken out of the source (``manager_without_telemetry``: the code as it
  would be with no telemetry support at all), on one store each, timed in alternating slices as the main
  benchmark does. Ratio with / without, median of the rounds (target >= 0.97). The control column times
  ``StateManager`` against itself the same way: how far from 1.000 noise alone moves a ratio.
- **One process per situation** (``off``, ``api``, ``sdk``): the import really fails for ``off``; the SDK's
  cost is the ratio sdk / off. The processes run in rounds, in a rotating order, medians reported.

Private resources: a SQLite file in a temporary directory, Postgres ``motia_state_bench_otel``, Redis db 8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

ADAPTERS: Final = ("memory", "sqlite", "postgres", "redis")
MODES: Final = ("off", "api", "sdk")  # one process each
AB_MODES: Final = ("off", "api", "noop")  # A/B in one process
WORKLOADS: Final = ("get", "set")
CONCURRENCY: Final = (1, 16)
TARGET: Final = 0.97
OUT: Final = Path(__file__).parent / "results"
_PG_DB: Final = "motia_state_bench_otel"
_REDIS_URL: Final = "redis://127.0.0.1:6379/8"


def _install(mode: str) -> None:
    """Make this process run in ``mode`` (before motia_state is imported)."""
    if mode == "off":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # every import of it now fails
        return
    if mode == "api":
        return
    from opentelemetry import metrics, trace

    if mode == "noop":
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        metrics.set_meter_provider(metrics.NoOpMeterProvider())
        return
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Spans(SpanExporter):
        """OTLP's exporter without the network: each batch encoded to its protobuf bytes, then dropped."""

        def export(self, spans: Any) -> SpanExportResult:
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    class Points(MetricExporter):
        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
            encode_metrics(metrics_data).SerializeToString()
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Spans()))
    trace.set_tracer_provider(provider)
    reader = PeriodicExportingMetricReader(Points(), export_interval_millis=5000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def _url(adapter: str, folder: str) -> tuple[str, dict[str, Any]]:
    from bench.backends import pg_url

    if adapter == "memory":
        return "memory://", {}
    if adapter == "sqlite":
        return f"sqlite:///{Path(folder) / 'otel.db'}", {}
    if adapter == "postgres":
        return pg_url(_PG_DB), {}
    return _REDIS_URL, {"key_prefix": "bench-otel:"}


async def _child(mode: str, adapter: str, folder: str, seconds: float) -> dict[str, float]:
    from bench.core import WORKLOADS as ALL_WORKLOADS
    from bench.core import measure
    from bench.subjects import MotiaSubject
    from motia_state import telemetry

    expected_on = mode == "sdk"
    if (telemetry.current() is not None) != expected_on or (mode == "off") == telemetry.API:
        raise SystemExit(f"mode {mode}: telemetry is not in the state this mode needs")
    url, options = _url(adapter, folder)
    subject = MotiaSubject(adapter, url, **options)
    await subject.open()
    out: dict[str, float] = {}
    try:
        for workload in WORKLOADS:
            for c in CONCURRENCY:
                m = await measure(subject, ALL_WORKLOADS[workload], c, seconds)
                out[f"{workload} c={c}"] = m.ops_per_s
    finally:
        await subject.close()
    return out


def manager_without_telemetry() -> Any:
    """``StateManager`` with its per-operation telemetry check taken out: the code as it would be without
    telemetry support at all, the baseline of the A/B (built from the source, so it is the same code)."""
    import ast
    import inspect
    import types

    import motia_state.manager as source

    tree = ast.parse(inspect.getsource(source))
    stripped = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "StateManager":
            for fn in node.body:
                if isinstance(fn, ast.AsyncFunctionDef):
                    kept = [
                        st
                        for st in fn.body
                        if not (isinstance(st, ast.If) and "current_telemetry" in ast.unparse(st.test))
                    ]
                    stripped += len(fn.body) - len(kept)
                    fn.body = kept
    if stripped < 16:
        raise SystemExit(f"found the telemetry check in only {stripped} operations of StateManager")
    module = types.ModuleType("motia_state._manager_without_telemetry")
    module.__package__ = "motia_state"
    exec(compile(tree, str(source.__file__), "exec"), module.__dict__)
    return module.StateManager


async def _child_ab(
    mode: str, adapter: str, folder: str, seconds: float, slices: int = 8, control: bool = False
) -> dict[str, float]:
    """Ratio StateManager / StateManager without the telemetry check, per cell, timed in alternating slices."""
    from bench.core import WORKLOADS as ALL_WORKLOADS
    from bench.core import measure_pair
    from bench.subjects import MotiaSubject
    from motia_state import telemetry

    if (mode == "off") == telemetry.API or telemetry.current() is not None:
        raise SystemExit(f"mode {mode}: telemetry is not in the state this mode needs")
    url, options = _url(adapter, folder)
    live = MotiaSubject(adapter, url, **options)
    baseline = MotiaSubject(adapter, url, **options)
    if not control:  # the control compares StateManager with itself: the noise of the measurement
        baseline.state = manager_without_telemetry().from_url(url, **options)
    await live.open()
    await baseline.open()
    out: dict[str, float] = {}
    try:
        for workload in WORKLOADS:
            for c in CONCURRENCY:
                a, b = await measure_pair(live, baseline, ALL_WORKLOADS[workload], c, seconds, slices)
                out[f"{workload} c={c}"] = a.ops_per_s / b.ops_per_s
    finally:
        await live.close()
        await baseline.close()
    return out


def _run_child(
    mode: str, adapter: str, folder: str, seconds: float, *, ab: bool = False, control: bool = False
) -> dict[str, float]:
    call = f"t._child({mode!r}, {adapter!r}, {folder!r}, {seconds!r})"
    if ab:
        call = f"t._child_ab({mode!r}, {adapter!r}, {folder!r}, {seconds!r}, control={control!r})"
    code = (
        f"import sys, json, asyncio; from bench import telemetry as t; t._install({mode!r}); "
        f"print(json.dumps(asyncio.run({call})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{adapter} {mode}: {done.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _prepare(adapter: str, folder: str) -> None:
    """Create the private database and bring its schema up, so no child pays for it."""
    from bench.backends import ensure_pg_database
    from motia_state import StateManager

    if adapter == "postgres":
        await ensure_pg_database(_PG_DB)
    url, options = _url(adapter, folder)
    async with StateManager.from_url(url, **options) as state:
        await state.get("warm", "up")


def run(adapters: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {"rounds": rounds, "seconds": seconds, "adapters": {}}
    with tempfile.TemporaryDirectory(prefix="motia-state-bench-otel-") as folder:
        for adapter in adapters:
            asyncio.run(_prepare(adapter, folder))
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
            ab: dict[str, list[dict[str, float]]] = {m: [] for m in AB_MODES}
            control: list[dict[str, float]] = []
            for r in range(rounds):
                order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
                for mode in order:
                    runs[mode].append(_run_child(mode, adapter, folder, seconds))
                for mode in AB_MODES:
                    ab[mode].append(_run_child(mode, adapter, folder, 2 * seconds, ab=True))
                control.append(_run_child("api", adapter, folder, 2 * seconds, ab=True, control=True))
                print(f"{adapter}: round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
            cells = list(runs["off"][0])
            median = {m: {c: statistics.median(run[c] for run in runs[m]) for c in cells} for m in MODES}
            results["adapters"][adapter] = {
                "ops_per_s": median,
                "process_ratio": {m: {c: median[m][c] / median["off"][c] for c in cells} for m in MODES if m != "off"},
                "ab_ratio": {m: {c: statistics.median(run[c] for run in ab[m]) for c in cells} for m in AB_MODES},
                "ab_ratio_min": {m: {c: min(run[c] for run in ab[m]) for c in cells} for m in AB_MODES},
                "control_ratio": {c: statistics.median(run[c] for run in control) for c in cells},
            }
            print(format_table({adapter: results["adapters"][adapter]}), flush=True)
    return results


def format_table(adapters: dict[str, Any]) -> str:
    """Markdown: one row per adapter and cell."""
    lines = [
        "| adapter | workload | off (ops/s) | off, A/B | api, A/B | noop, A/B | control, A/A |"
        " api / off, processes | sdk / off, processes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for adapter, data in adapters.items():
        for cell, off in data["ops_per_s"]["off"].items():
            ab = [data["ab_ratio"][m][cell] for m in AB_MODES]
            marks = [f"{r:.3f}" + ("" if r >= TARGET else " (below)") for r in ab]
            proc = data["process_ratio"]
            lines.append(
                f"| {adapter} | {cell} | {off:,.0f} | {' | '.join(marks)} | {data['control_ratio'][cell]:.3f}"
                f" | {proc['api'][cell]:.2f}"
                f" | {proc['sdk'][cell]:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.telemetry", description=__doc__.split("\n\n")[0])
    p.add_argument("--adapters", default=",".join(ADAPTERS), help="comma-separated, from: " + ", ".join(ADAPTERS))
    p.add_argument("--rounds", type=int, default=5, help="processes per mode; the median is reported (default 5)")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per cell and process (default 1.0)")
    args = p.parse_args(argv)
    adapters = [a.strip() for a in args.adapters.split(",") if a.strip()]
    bad = [a for a in adapters if a not in ADAPTERS]
    if bad:
        raise SystemExit(f"unknown adapter: {', '.join(bad)}; choose from {', '.join(ADAPTERS)}")
    t0 = time.monotonic()
    results = run(adapters, args.rounds, args.seconds)
    print()
    print(format_table(results["adapters"]))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "telemetry.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"\nresults: {OUT / 'telemetry.json'}; took {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
