"""Scale runs: a 100-entry scope on an empty table vs among N rows; cleanup; list_groups; watch and triggers.

``python -m bench.scale --rows 1000000,3000000,10000000`` grows one table through every size in turn (each size
with ``rows // 5`` expired rows more, removed again by the timed ``cleanup()``), compares each with the empty
table, and writes ``bench/results/scale.json`` with a top-level ``targets`` list (a missed one gets a
pyinstrument text profile, ``bench/results/profile-scale-*.txt``). ``run_scale(name, rows)`` is the one-size run
the main benchmark (``bench.cli --scale-rows``) calls.

Rows are bulk-loaded with the raw driver (COPY, executemany in one transaction, pipelines) in the exact storage
format the adapter uses, not through the API, in chunks of 500,000 rows, so that loading takes seconds per
million rows.

Private resources only: Postgres database ``motia_state_bench_scale``, a SQLite file in a temporary directory
(removed at the end), Redis db 11 (flushed; ``MOTIA_STATE_BENCH_SCALE_REDIS_URL`` overrides it; db 9 is the main
benchmark's, db 10 the trigger tests').
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol

from bench.backends import Backend, make_backend
from bench.core import sample_value

__all__ = ["BulkLoader", "Row", "main", "run_scale", "run_sizes"]

#: (scope, key, JSON text, expiry as epoch seconds or None)
Row = tuple[str, str, str, float | None]

TARGET = "scale-target"
PER_SCOPE = 100
CHUNK: Final = 500_000
ADAPTERS: Final = ("memory", "sqlite", "postgres", "redis")
OUT: Final = Path(__file__).parent / "results"
MAX_RATIO: Final = 2.0
CLEANUP_RATE: Final = 500_000.0
#: The scope ops held to the 2x target (the c=16 ones are reported with them).
TARGET_OPS: Final = ("get", "keys", "clear", "get_c16", "set_c16")
WATCH_RATE: Final = 5000.0
TRIGGER_RATE: Final = 2000.0
#: Slack on a delay p99 "unaffected by table size": within 2x of the empty table's, plus this (ms), since a p99
#: of 1 ms (Redis) doubles on noise alone.
DELAY_SLACK_MS: Final = 5.0


def scale_redis_url() -> str:
    """The scale run's own Redis db (flushed), not the main benchmark's db 9."""
    return os.environ.get("MOTIA_STATE_BENCH_SCALE_REDIS_URL", "redis://127.0.0.1:6379/11")


class BulkLoader(Protocol):
    """What a raw subject offers the scale run."""

    async def bulk_load(self, rows: Iterator[Row]) -> None:
        """Write ``rows`` as fast as the driver allows, in the adapter's storage format."""

    async def count_rows(self, expired: bool) -> int:
        """Rows stored (expired ones if ``expired``, else live ones), cleaned up or not."""

    async def settle(self) -> None:
        """Let the store be at rest before timing: what the database does on its own after a bulk load
        (VACUUM ANALYZE, a checkpoint), done now so that it does not run in the middle of the timing."""


def live_rows(n: int, start: int = 0) -> Iterator[Row]:
    """Live rows ``start``…``n - 1``, 100 per scope, in scopes ``other-00000``…"""
    for i in range(start, n):
        yield (f"other-{i // PER_SCOPE:05d}", f"k{i % PER_SCOPE:03d}", f'{{"n":{i},"status":"live"}}', None)


def expired_rows(n: int, now: float) -> Iterator[Row]:
    """``n`` rows that expired an hour ago, 100 per scope, in scopes ``expired-00000``…"""
    for i in range(n):
        yield (f"expired-{i // PER_SCOPE:05d}", f"k{i % PER_SCOPE:03d}", f'{{"n":{i}}}', now - 3600.0)


async def _load(loader: BulkLoader, rows: Iterator[Row]) -> None:
    """``rows`` in chunks (a multiple of 100: whole scopes), so that no driver holds 10M records at once."""
    while chunk := list(itertools.islice(rows, CHUNK)):
        await loader.bulk_load(iter(chunk))


async def _median_us(
    call: Callable[[], Awaitable[object]], n: int, before: Callable[[], Awaitable[object]] | None
) -> float:
    times: list[float] = []
    for _ in range(n):
        if before is not None:
            await before()
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


async def _time_scope_ops(state: Any, quick: bool, only: tuple[str, ...] = TARGET_OPS) -> dict[str, float]:
    values = {f"t{i:03d}": sample_value(i) for i in range(PER_SCOPE)}
    await state.set_many(TARGET, values)
    n = 50 if quick else 300
    keys = list(values)
    counter = iter(range(10**9))

    async def get() -> object:
        return await state.get(TARGET, keys[next(counter) % PER_SCOPE])

    async def refill() -> None:
        await state.set_many(TARGET, values)

    async def concurrent(op: str, per_task: int) -> float:
        """Wall time per operation with 16 tasks at once (the adapters' batched paths), in µs."""

        async def task(t: int) -> None:
            for i in range(per_task):
                k = keys[(t * 7 + i) % PER_SCOPE]
                if op == "get":
                    await state.get(TARGET, k)
                else:
                    await state.set(TARGET, k, values[k])

        await asyncio.gather(*(task(t) for t in range(16)))  # warm: statements, plans
        rounds: list[float] = []
        for _ in range(3 if quick else 7):  # the median of several rounds: the machine is shared
            t0 = time.perf_counter()
            await asyncio.gather(*(task(t) for t in range(16)))
            rounds.append((time.perf_counter() - t0) * 1e6 / (16 * per_task))
        return statistics.median(rounds)

    timers: dict[str, Callable[[], Awaitable[float]]] = {
        "get_c16": lambda: concurrent("get", 5 if quick else 20),
        "set_c16": lambda: concurrent("set", 3 if quick else 10),
        "get": lambda: _median_us(get, n, None),
        "keys": lambda: _median_us(lambda: state.keys(TARGET), max(20, n // 5), None),
        "clear": lambda: _median_us(lambda: state.clear(TARGET), 10 if quick else 30, refill),
    }
    out = {op: await timers[op]() for op in only}
    await state.set_many(TARGET, values)
    return out


async def _watch(count: Callable[[], Awaitable[int]], seen: list[int], stop: asyncio.Event) -> None:
    """Poll the number of expired rows from another connection while cleanup() runs."""
    while not stop.is_set():
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):  # a locked SQLite file or similar: just look again
            seen.append(await count())
        # A count over 10M rows takes a while and competes with the cleanup (for the 2 cores; on Redis for the
        # server's one thread): count at most a tenth of the time. Counting a third of the time (as on
        # 2026-12-02 14:43) made cleanup() of 2M rows 1.3x (Postgres) to 2.5x (SQLite) slower.
        await asyncio.sleep(max(0.02, 9 * (time.perf_counter() - t0)))


async def _open(name: str) -> tuple[Backend, BulkLoader]:
    if name == "redis":
        # make_backend reads the Redis URL from the environment: point it at the scale run's own db for this call.
        saved = os.environ.get("MOTIA_STATE_BENCH_REDIS_URL")
        os.environ["MOTIA_STATE_BENCH_REDIS_URL"] = scale_redis_url()
        try:
            backend = await make_backend(name)
        finally:
            if saved is None:
                del os.environ["MOTIA_STATE_BENCH_REDIS_URL"]
            else:
                os.environ["MOTIA_STATE_BENCH_REDIS_URL"] = saved
    else:
        backend = await make_backend(name, db_suffix="_scale")
    await backend.open()
    loader: BulkLoader
    if name == "memory":
        from bench.raw_memory import MemoryLoader

        loader = MemoryLoader(backend.motia.state.adapter)
    else:
        loader = backend.raw  # type: ignore[assignment]
    return backend, loader


async def _cleanup(name: str, state: Any, loader: BulkLoader, n_expired: int) -> dict[str, Any]:
    live_before = await loader.count_rows(expired=False)
    seen: list[int] = []
    stop = asyncio.Event()
    # The memory store's count blocks the loop it shares with cleanup(): nothing to see there.
    watcher = (
        None if name == "memory" else asyncio.create_task(_watch(lambda: loader.count_rows(expired=True), seen, stop))
    )
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    removed = await state.cleanup()
    cleanup_s = time.perf_counter() - t0
    stop.set()
    if watcher is not None:
        await watcher
    expired_after = await loader.count_rows(expired=True)
    live_after = await loader.count_rows(expired=False)
    # A count strictly between "all" and "none", seen from another connection, means a batch committed.
    intermediate = sorted({c for c in seen if 0 < c < n_expired}, reverse=True)
    if name == "redis":
        batches = "Lua script per scope, <= 1,000 members each"
    elif name == "memory":
        batches = "one pass in process"
    else:
        batches = f"{len(intermediate) + 1}+ commits seen" if intermediate else "one commit seen"
    return {
        "expired": n_expired,
        "removed": removed,
        "expired_left": expired_after,
        "live": live_before,
        "live_after": live_after,
        "seconds": cleanup_s,
        "rows_per_s": removed / cleanup_s if cleanup_s > 0 else 0.0,
        "batches": batches,
        "intermediate_counts": intermediate[:20],
    }


# --- watch and triggers on the table as it is -------------------------------------------------------------


async def _switch_changes(url: str, on: bool) -> None:
    """Turn the SQL store's change trigger on or off (it is the store's switch: a connect with the setting
    flips it), so that bulk loads and the timed ops record nothing and the watch has changes to deliver."""
    from motia_state import StateManager

    state = StateManager.from_url(url, changes=on)
    await state.connect()
    await state.close()


async def _memory_watch(state: Any, seconds: float) -> dict[str, Any]:
    """In one process (the memory store lives there): a writer task floods ``set_many(100)`` while one watch
    of every scope follows; delivered rate and delay from the write call to delivery."""
    adapter = state.adapter
    adapter.changes_off = False  # the bench store was built with changes off; record for this measurement
    delays: list[float] = []
    written = 0
    try:
        async with state.watch() as changes:
            stop = time.perf_counter() + seconds

            async def writer() -> None:
                nonlocal written
                n = 0
                while time.perf_counter() < stop:
                    sent = time.perf_counter()
                    await state.set_many("bench-flood-0", {f"e{i:03d}": {"i": n, "sent": sent} for i in range(100)})
                    written += 100
                    n += 1
                    await asyncio.sleep(0)  # let the watch run: one loop, two tasks

            task = asyncio.create_task(writer())
            t0 = time.perf_counter()
            last = t0
            while not task.done() or len(delays) < written:
                try:
                    change = await asyncio.wait_for(anext(changes), 2.0)
                except TimeoutError:
                    break
                last = time.perf_counter()
                delays.append(last - change.new_value["sent"])
            await task
    finally:
        adapter.changes_off = True
    from bench.feed import delay_summary

    return {
        "adapter": "memory",
        "changes": len(delays),
        "delivered_rate_per_s": len(delays) / (last - t0) if last > t0 else 0.0,
        **delay_summary(delays or [0.0]),
    }


async def _feed(name: str, state: Any, url: str, tmp: Path, tag: str, args: argparse.Namespace) -> dict[str, Any]:
    """Watch keep-up and delay, trigger throughput (4 workers), on the store as it is now."""
    from bench.feed import keep_up_on, latency_on
    from bench.triggers import throughput_on

    if name == "memory":
        return {"watch": await _memory_watch(state, args.flood_seconds)}
    await _switch_changes(url, True)
    try:
        out = {
            "watch": await keep_up_on(name, url, {}, 4, args.flood_seconds),
            "delay": await latency_on(name, url, {}, 200.0, args.latency_changes),
            # A trigger name new to the store starts at its current revision: none of the earlier changes.
            "triggers": await throughput_on(name, url, tmp, 4, args.trigger_changes, trigger=f"scale-{tag}"),
        }
    finally:
        await _switch_changes(url, False)
    return out


# --- one backend through every size -------------------------------------------------------------------------


async def run_sizes(
    name: str, sizes: list[int], *, quick: bool = False, feed: argparse.Namespace | None = None, echo: bool = False
) -> dict[str, Any]:
    """The empty table, then each of ``sizes`` (ascending; the table grows from one to the next); ``feed`` (the
    command's options) adds the watch and trigger measurements; ``echo`` prints each size when done."""
    backend, loader = await _open(name)
    raw = backend.raw
    state = backend.motia.state
    tmp = Path(tempfile.mkdtemp(prefix="motia-state-scale-"))
    result: dict[str, Any] = {"adapter": name, "sizes": []}
    try:
        await raw.reset()
        await loader.settle()
        result["empty"] = {"ops": await _time_scope_ops(state, quick)}
        if feed is not None:
            result["empty"]["feed"] = await _feed(name, state, backend.url, tmp, "empty", feed)
        loaded = 0
        for rows in sorted(sizes):
            t0 = time.perf_counter()
            await _load(loader, live_rows(rows, loaded))
            loaded = rows
            n_expired = rows // 5
            await _load(loader, expired_rows(n_expired, time.time()))
            await loader.settle()
            load_s = time.perf_counter() - t0
            full = await _time_scope_ops(state, quick)
            t0 = time.perf_counter()
            groups = await state.list_groups()
            groups_s = time.perf_counter() - t0
            empty = result["empty"]["ops"]
            size: dict[str, Any] = {
                "rows": rows,
                "scopes": rows // PER_SCOPE,
                "load_s": load_s,
                "ops": {op: {"empty_us": empty[op], "full_us": full[op], "ratio": full[op] / empty[op]} for op in full},
                "list_groups": {"groups": len(groups), "seconds": groups_s},
            }
            if feed is not None:
                missed = [op for op in ("get", "keys", "clear") if size["ops"][op]["ratio"] > MAX_RATIO]
                for op in missed:
                    size["ops"][op]["profile"] = await _profiled(
                        f"scale-{name}-{rows}-{op}",
                        f"{name} {op} of a 100-entry scope among {rows:,} rows",
                        _time_scope_ops(state, quick, (op,)),
                    )
                # Watch and triggers while the expired rows are still there, then back to changes off for the
                # cleanup (which would otherwise also record 2M `expired` changes) and the next load.
                size["feed"] = await _feed(name, state, backend.url, tmp, str(rows), feed)
            size["cleanup"] = await _cleanup(name, state, loader, n_expired)
            if feed is not None and size["cleanup"]["rows_per_s"] < CLEANUP_RATE:
                # Expired rows once more, and the same cleanup under the profiler.
                await _load(loader, expired_rows(n_expired, time.time()))
                await loader.settle()
                t0 = time.perf_counter()
                size["cleanup"]["profile"] = await _profiled(
                    f"scale-{name}-{rows}-cleanup",
                    f"{name} cleanup() of {n_expired:,} expired among {rows:,} live rows",
                    state.cleanup(),
                )
                # The same cleanup with no count polling beside it (and the profiler's own cost).
                size["cleanup"]["profiled_rows_per_s"] = n_expired / (time.perf_counter() - t0)
            result["sizes"].append(size)
            if echo:
                print(_format_size(name, size), flush=True)
    finally:
        try:
            if name == "redis":
                # FLUSHDB of 12M keys blocks the server for longer than the client's read timeout: let Redis
                # free them in the background (a blocking reset lost a finished run's results, 15:07).
                await raw.r.flushdb(asynchronous=True)  # type: ignore[attr-defined]
            else:
                await raw.reset()
        except Exception as exc:  # the results stand; say what is left behind
            result["reset_error"] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: the store was not emptied: {result['reset_error']}", flush=True)
        finally:
            await backend.close()
            shutil.rmtree(tmp, ignore_errors=True)
            if name == "sqlite":  # do not leave a 2 GB file until the process exits
                from bench.feed import _remove_sqlite

                _remove_sqlite(Path(backend.url.removeprefix("sqlite:///")))
    return result


async def run_scale(name: str, rows: int, *, quick: bool = False) -> dict[str, Any]:
    """The scale results of adapter ``name`` at one size (its own database / file / db number), as the main
    benchmark reports them: no watch or trigger measurement."""
    run = await run_sizes(name, [rows], quick=quick)
    return run["sizes"][0]  # type: ignore[no-any-return]


async def _profiled(tag: str, head: str, call: Awaitable[object]) -> str:
    from bench.feed import profiled

    return await profiled(tag, head, call)


def json_text(value: Any) -> str:
    """The JSON text the adapters store (compact, UTF-8 as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- targets, extrapolation, report -------------------------------------------------------------------------


def _fit(points: list[tuple[float, float]], at: float) -> float | None:
    """The least-squares line through ``points`` (rows, value), evaluated at ``at``; None for < 2 points."""
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return my + slope * (at - mx)


def extrapolate(run: dict[str, Any], at: int) -> dict[str, Any] | None:
    """Each measured figure fitted linearly over the sizes run, at ``at`` rows (when ``at`` was not run)."""
    sizes = run["sizes"]
    if len(sizes) < 2 or any(s["rows"] == at for s in sizes):
        return None

    def fit(get: Callable[[dict[str, Any]], float]) -> float | None:
        return _fit([(s["rows"], get(s)) for s in sizes], at)

    out: dict[str, Any] = {
        "rows": at,
        "from_sizes": [s["rows"] for s in sizes],
        "load_s": fit(lambda s: s["load_s"]),
        "ops_ratio": {op: _fit([(s["rows"], s["ops"][op]["ratio"]) for s in sizes], at) for op in sizes[0]["ops"]},
        "cleanup_rows_per_s": fit(lambda s: s["cleanup"]["rows_per_s"]),
    }
    if "feed" in sizes[0]:
        out["watch_delivered_per_s"] = fit(lambda s: s["feed"]["watch"]["delivered_rate_per_s"])
        if "triggers" in sizes[0]["feed"]:
            out["triggers_handled_per_s"] = fit(lambda s: s["feed"]["triggers"]["handled_per_s"])
    return out


def evaluate_targets(backends: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 18's scale targets at the largest size run per backend."""
    from bench.feed import target

    out: list[dict[str, Any]] = []
    for name, run in backends.items():
        if not run.get("sizes"):
            continue
        s = run["sizes"][-1]
        where = f"{name} at {s['rows']:,} rows"
        for op in TARGET_OPS:
            m = s["ops"][op]
            out.append(
                target(
                    f"{where}: {op} of a 100-entry scope, full / empty table <= {MAX_RATIO}",
                    round(m["ratio"], 2),
                    m["ratio"] <= MAX_RATIO,
                    m.get("profile"),
                )
            )
        c = s["cleanup"]
        clean = c["expired_left"] == 0 and c["live_after"] == c["live"]
        out.append(
            target(
                f"{where}: cleanup() >= {CLEANUP_RATE:,.0f} rows/s, every expired row removed, none live",
                f"{c['rows_per_s']:,.0f} rows/s; {c['removed']:,} removed; {c['expired_left']} expired left;"
                f" live {c['live']:,} -> {c['live_after']:,}"
                + (
                    f"; unwatched, profiled: {c['profiled_rows_per_s']:,.0f} rows/s"
                    if "profiled_rows_per_s" in c
                    else ""
                ),
                c["rows_per_s"] >= CLEANUP_RATE and clean,
                c.get("profile"),
            )
        )
        if "feed" not in s:
            continue
        empty, full = run["empty"]["feed"], s["feed"]
        ew, fw = empty["watch"]["delivered_rate_per_s"], full["watch"]["delivered_rate_per_s"]
        out.append(
            target(
                f"{where}: one watch delivers >= {WATCH_RATE:,.0f} changes/s",
                round(fw),
                fw >= WATCH_RATE,
                full["watch"].get("profile"),
            )
        )
        out.append(
            target(
                f"{where}: watch delivery rate unaffected (empty / full table <= {MAX_RATIO})",
                f"{ew:,.0f}/s empty, {fw:,.0f}/s full, ratio {ew / fw:.2f}" if fw else "0/s full",
                fw > 0 and ew / fw <= MAX_RATIO,
            )
        )
        if "delay" in full:  # memory: the in-process flood's delay is its backlog, not a delivery delay
            e99, f99 = empty["delay"]["p99_ms"], full["delay"]["p99_ms"]
            out.append(
                target(
                    f"{where}: watch delay p99 unaffected (full <= {MAX_RATIO} x empty + {DELAY_SLACK_MS:.0f} ms)",
                    f"p99 {e99:.1f} ms empty, {f99:.1f} ms full",
                    f99 <= MAX_RATIO * e99 + DELAY_SLACK_MS,
                )
            )
        if "triggers" in full:
            et, ft = empty["triggers"]["handled_per_s"], full["triggers"]["handled_per_s"]
            if name in ("postgres", "redis"):
                out.append(
                    target(
                        f"{where}: triggers, 4 workers, >= {TRIGGER_RATE:,.0f} changes/s",
                        round(ft),
                        ft >= TRIGGER_RATE,
                        full["triggers"].get("profile"),
                    )
                )
            out.append(
                target(
                    f"{where}: trigger rate unaffected (empty / full table <= {MAX_RATIO})",
                    f"{et:,.0f}/s empty, {ft:,.0f}/s full, ratio {et / ft:.2f}",
                    et / ft <= MAX_RATIO,
                )
            )
    return out


def _format_size(name: str, s: dict[str, Any]) -> str:
    lines = [f"{name}: {s['rows']:,} rows in {s['scopes']:,} other scopes (table grown in {s['load_s']:.1f} s)"]
    for op, m in s["ops"].items():
        lines.append(f"  {op:<8} empty {m['empty_us']:>9.1f} us  full {m['full_us']:>9.1f} us  ratio {m['ratio']:.2f}")
    c = s["cleanup"]
    lines.append(
        f"  cleanup: removed {c['removed']:,} of {c['expired']:,} expired among {c['live']:,} live in"
        f" {c['seconds']:.2f} s = {c['rows_per_s']:,.0f} rows/s; {c['batches']}; live left {c['live_after']:,}"
    )
    g = s["list_groups"]
    lines.append(f"  list_groups: {g['groups']:,} scopes in {g['seconds'] * 1000:.0f} ms")
    f = s.get("feed")
    if f:
        w = f["watch"]
        lines.append(f"  watch: delivered {w['delivered_rate_per_s']:,.0f} changes/s")
        if "delay" in f:
            d = f["delay"]
            lines.append(f"  delay: p50 {d['p50_ms']:.1f} ms  p99 {d['p99_ms']:.1f} ms")
        if "triggers" in f:
            lines.append(f"  triggers (4 workers): {f['triggers']['handled_per_s']:,.0f} changes/s")
    return "\n".join(lines)


def to_markdown(results: dict[str, Any]) -> str:
    """The run as Markdown tables (for BENCHMARKS.md)."""
    out = [f"Run {results['started_utc']} (`{results['command']}`).", ""]
    out += [
        "| backend | rows | grown in | get | keys | clear | get c=16 | set c=16 | cleanup rows/s | list_groups |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, run in results["backends"].items():
        e = run["empty"]["ops"]
        out.append(
            f"| {name} | empty | | {e['get']:.0f} µs | {e['keys']:.0f} µs | {e['clear']:.0f} µs | {e['get_c16']:.0f} µs"
            f" | {e['set_c16']:.0f} µs | | |"
        )
        for s in run["sizes"]:
            o = s["ops"]
            out.append(
                f"| {name} | {s['rows']:,} | {s['load_s']:.0f} s |"
                + "".join(f" {o[op]['ratio']:.2f}x |" for op in ("get", "keys", "clear", "get_c16", "set_c16"))
                + f" {s['cleanup']['rows_per_s']:,.0f} | {s['list_groups']['seconds']:.2f} s |"
            )
    out += [
        "",
        "| backend | rows | watch delivered/s | delay p50 / p99 ms | triggers (4 workers) handled/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, run in results["backends"].items():
        for label, f in [("empty", run["empty"].get("feed"))] + [
            (f"{s['rows']:,}", s.get("feed")) for s in run["sizes"]
        ]:
            if not f:
                continue
            # memory: no delay column (its in-process flood's delay is the backlog the one loop builds up)
            d = f"{f['delay']['p50_ms']:.1f} / {f['delay']['p99_ms']:.1f}" if "delay" in f else "—"
            t = f"{f['triggers']['handled_per_s']:,.0f}" if "triggers" in f else "—"
            out.append(f"| {name} | {label} | {f['watch']['delivered_rate_per_s']:,.0f} | {d} | {t} |")
    return "\n".join(out) + "\n"


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(int(x) for x in args.rows.split(",") if x)
    results: dict[str, Any] = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
        "sizes": sizes,
        "backends": {},
        "extrapolated": {},
        "errors": {},
    }
    names = [a for a in args.adapters.split(",") if a]
    if args.merge and (OUT / "scale.json").exists():
        # Keep the other backends of the last run (one backend run again): their own command and time stay.
        before = json.loads((OUT / "scale.json").read_text(encoding="utf-8"))
        for key in ("backends", "extrapolated", "errors"):
            results[key].update({k: v for k, v in before.get(key, {}).items() if k not in names})
        results["merged"] = [*before.get("merged", []), {"command": before["command"], "at": before["started_utc"]}]
    for name in names:
        t0 = time.perf_counter()
        print(f"--- {name}: sizes {', '.join(f'{s:,}' for s in sizes)}", flush=True)
        try:
            run = await run_sizes(name, sizes, quick=args.quick, feed=None if args.no_feed else args, echo=True)
        except Exception as exc:  # one backend's failure must not lose the others' results
            results["errors"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            print(f"{name}: {results['errors'][name]}", flush=True)
            continue
        run["seconds"] = time.perf_counter() - t0
        run["started_utc"] = results["started_utc"]
        results["backends"][name] = run
        if (ex := extrapolate(run, args.extrapolate_to)) is not None:
            results["extrapolated"][name] = ex
        _write(results)  # a long run keeps what it has
    results["targets"] = evaluate_targets(results["backends"])
    return results


def _write(results: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.scale``: every backend through every size, into ``bench/results/scale.json``."""
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--adapters", default=",".join(ADAPTERS))
    p.add_argument("--rows", default="1000000,3000000,10000000", help="sizes, comma-separated (ascending)")
    p.add_argument("--quick", action="store_true", help="fewer timed calls")
    p.add_argument("--no-feed", action="store_true", help="skip the watch and trigger measurements")
    p.add_argument("--flood-seconds", type=float, default=4.0, help="keep-up: seconds the 4 writers flood")
    p.add_argument("--latency-changes", type=int, default=600, help="delay: changes written at 200/s")
    p.add_argument("--trigger-changes", type=int, default=20_000, help="triggers: changes written")
    p.add_argument("--merge", action="store_true", help="keep the other backends of the last scale.json")
    p.add_argument("--extrapolate-to", type=int, default=10_000_000, help="fit the sizes run to this many rows")
    args = p.parse_args(argv)
    results = asyncio.run(_run(args))
    _write(results)
    md = to_markdown(results)
    (OUT / "scale.md").write_text(md, encoding="utf-8")
    print()
    print(md)
    if results["extrapolated"]:
        print(json.dumps(results["extrapolated"], indent=1))
    from bench.feed import print_targets

    print_targets(results["targets"])
    print(f"results: {OUT / 'scale.json'} and {OUT / 'scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
