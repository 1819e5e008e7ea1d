"""``python -m bench.feed``: what the change feed (SPEC §10) costs and how fast it delivers, per backend.

Three measurements, each in one run on this machine:

- **overhead**: the same workloads on two stores of one backend, one with ``changes: on`` and one with
  ``changes: off``, timed in alternating slices (as the main benchmark does); the ratio on/off (target >= 0.85);
- **latency**: a writer *process* sets a key at a steady rate, each value holding its send time; a watch in
  this process notes when each arrives: the delay from the writer's call to delivery, p50/p99/max (target
  p99 < 1 s);
- **keep-up**: four writer processes write as fast as they can with ``set_many`` (100 entries, so 100 changes
  a call) while one watch follows every scope: the write rate, the rate the watch delivered, and how long it
  took to drain after the writers stopped; then the same changes replayed with ``since=`` (target >= 5,000
  changes/s delivered).

Each target is written as a top-level ``targets`` list of ``feed.json`` and printed as a met/MISSED line; a
missed one gets a pyinstrument text profile (``bench/results/profile-feed-*.txt``).

Private resources only: SQLite files in a temporary directory, Postgres databases ``motia_state_bench_feed_*``,
Redis db 2 (flushed; ``MOTIA_STATE_BENCH_FEED_REDIS_URL`` overrides it; db 9 is the main benchmark's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Final

from bench.backends import ensure_pg_database, pg_url
from bench.core import WORKLOADS, measure, measure_pair
from bench.subjects import MotiaSubject
from motia_state import StateManager
from motia_state.sql import TABLES, VERSION_TABLE

ADAPTERS: Final = ("memory", "sqlite", "postgres", "redis")
OVERHEAD_WORKLOADS: Final = ("set", "update", "set_many1000", "clear100")
OUT: Final = Path(__file__).parent / "results"
TARGET_OVERHEAD: Final = 0.85
TARGET_KEEP_UP: Final = 5000.0
TARGET_P99_S: Final = 1.0
ROOT: Final = Path(__file__).resolve().parent.parent


def redis_url() -> str:
    """This benchmark's own Redis db (flushed), not the main benchmark's db 9."""
    return os.environ.get("MOTIA_STATE_BENCH_FEED_REDIS_URL", "redis://127.0.0.1:6379/2")


# --- targets -------------------------------------------------------------------------------------------


def target(name: str, value: Any, met: bool, profile: str | None = None) -> dict[str, Any]:
    """One entry of a results file's ``targets`` list."""
    row: dict[str, Any] = {"target": name, "value": value, "met": met}
    if profile is not None:
        row["profile"] = profile
    return row


def print_targets(targets: list[dict[str, Any]]) -> None:
    """One met / MISSED line per target."""
    for t in targets:
        where = f"  (profile: {t['profile']})" if t.get("profile") else ""
        print(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: {t['value']}{where}", flush=True)


async def profiled(tag: str, head: str, call: Awaitable[object]) -> str:
    """Await ``call`` under pyinstrument; write the call tree to ``bench/results/profile-<tag>.txt``; its path."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="enabled")
    profiler.start()
    try:
        await call
    finally:
        profiler.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"profile-{tag}.txt"
    path.write_text(f"# {head}\n" + profiler.output_text(unicode=True, color=False), encoding="utf-8")
    return str(path.relative_to(ROOT))


async def _reset_pg(db: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    await ensure_pg_database(db)
    url = pg_url(db)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join((*TABLES, VERSION_TABLE))} CASCADE")
        await conn.execute("DROP FUNCTION IF EXISTS motia_state_record_change() CASCADE")
    finally:
        await conn.close()
    return url


async def _flush_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def store_url(name: str, tag: str, tmp: Path) -> tuple[str, dict[str, Any]]:
    """A fresh store of backend ``name`` for this benchmark (``tag`` tells two stores apart)."""
    if name == "memory":
        return "memory://", {}
    if name == "sqlite":
        path = tmp / f"feed-{tag}.db"
        _remove_sqlite(path)
        return f"sqlite:///{path}", {}
    if name == "postgres":
        return await _reset_pg(f"motia_state_bench_feed_{tag}"), {}
    if name == "redis":
        return redis_url(), {"key_prefix": f"bench:feed:{tag}:"}
    raise ValueError(name)


# --- overhead ------------------------------------------------------------------------------------------


async def overhead(
    name: str, tmp: Path, concurrency: list[int], seconds: float, runs: int, profile: bool = True
) -> list[dict[str, Any]]:
    if name == "redis":
        await _flush_redis(redis_url())
    on_url, on_opts = await store_url(name, "on", tmp)
    off_url, off_opts = await store_url(name, "off", tmp)
    on = MotiaSubject(f"{name} changes on", on_url, changes=True, **on_opts)
    off = MotiaSubject(f"{name} changes off", off_url, changes=False, **off_opts)
    await on.open()
    await off.open()
    rows = []
    try:
        for workload in OVERHEAD_WORKLOADS:
            for c in concurrency:
                on_rates: list[float] = []
                off_rates: list[float] = []
                for run in range(runs):
                    first, second = (on, off) if run % 2 == 0 else (off, on)
                    m1, m2 = await measure_pair(first, second, WORKLOADS[workload], c, seconds, 4)
                    (on_rates if first is on else off_rates).append(m1.ops_per_s)
                    (on_rates if second is on else off_rates).append(m2.ops_per_s)
                on_s, off_s = statistics.median(on_rates), statistics.median(off_rates)
                row: dict[str, Any] = {
                    "adapter": name,
                    "workload": workload,
                    "concurrency": c,
                    "on_ops_per_s": on_s,
                    "off_ops_per_s": off_s,
                    "ratio": on_s / off_s if off_s else float("nan"),
                }
                rows.append(row)
                print(
                    f"overhead {name:9} {workload:13} c={c:<3} on {on_s:10,.0f}/s off {off_s:10,.0f}/s"
                    f" ratio {row['ratio']:.2f}",
                    flush=True,
                )
                if profile and not row["ratio"] >= TARGET_OVERHEAD:
                    # Where a write with changes on spends its time: the on store alone, the same workload.
                    w = WORKLOADS[workload]
                    row["profile"] = await profiled(
                        f"feed-{name}-{workload}-c{c}",
                        f"{name} {workload} c={c} changes on (on/off {row['ratio']:.2f})",
                        measure(on, w, c, max(1.0, seconds)),
                    )
    finally:
        await on.close()
        await off.close()
    return rows


# --- writer processes ----------------------------------------------------------------------------------


def _spawn(url: str, options: dict[str, Any], *args: str) -> subprocess.Popen[bytes]:
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "bench.feed", "writer", url, json.dumps(options), *args], env=env)


async def _writer(url: str, options: dict[str, Any], mode: str, arg1: str, arg2: str) -> None:
    state = StateManager.from_url(url, **options)
    try:
        await state.connect()
        if mode == "paced":  # arg1 changes per second, arg2 changes
            rate, count = float(arg1), int(arg2)
            start = time.time()
            for i in range(count):
                delay = start + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await state.set("bench-latency", f"k{i % 50}", {"i": i, "sent": time.time()})
        elif mode == "flood":  # arg1 = writer id, arg2 = seconds
            deadline = time.time() + float(arg2)
            batch = {f"e{i:03d}": {"i": i, "w": arg1} for i in range(100)}
            n = 0
            while time.time() < deadline:
                await state.set_many(f"bench-flood-{arg1}", batch)
                n += 1
            print(json.dumps({"writer": arg1, "changes": n * 100}), flush=True)
    finally:
        await state.close()


def delay_summary(delays: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``delays`` (seconds), in milliseconds."""
    ordered = sorted(delays)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def delay_row(r: dict[str, Any]) -> str:
    """One row of a delay table: backend, changes, rate, p50, p99, max."""
    return (
        f"| {r['adapter']} | {r['changes']} | {r['rate_per_s']:.0f}/s | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        f" {r['max_ms']:.1f} |"
    )


# --- latency -------------------------------------------------------------------------------------------


async def latency(name: str, tmp: Path, rate: float, count: int) -> dict[str, Any]:
    if name == "memory":
        return {"adapter": name, "skipped": "one process only: the store lives in the process"}
    if name == "redis":
        await _flush_redis(redis_url())
    url, options = await store_url(name, "latency", tmp)
    return await latency_on(name, url, options, rate, count)


async def latency_on(name: str, url: str, options: dict[str, Any], rate: float, count: int) -> dict[str, Any]:
    """The delivery delay on the store at ``url`` as it is (``bench.scale`` runs it on a full table)."""
    state = StateManager.from_url(url, **options)
    delays: list[float] = []
    try:
        async with state.watch("bench-latency") as changes:
            writer = _spawn(url, options, "paced", str(rate), str(count))
            try:
                async with asyncio.timeout(count / rate + 60):
                    while len(delays) < count:
                        change = await anext(changes)
                        delays.append(time.time() - change.new_value["sent"])
            finally:
                await asyncio.to_thread(writer.wait)
    finally:
        await state.close()
    result = {"adapter": name, "rate_per_s": rate, "changes": count, **delay_summary(delays)}
    print(
        f"latency  {name:9} {count} changes at {rate:.0f}/s from another process:"
        f" p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  max {result['max_ms']:.1f} ms",
        flush=True,
    )
    return result


# --- keep-up -------------------------------------------------------------------------------------------


async def keep_up(name: str, tmp: Path, writers: int, seconds: float) -> dict[str, Any]:
    if name == "memory":
        return {"adapter": name, "skipped": "one process only: the store lives in the process"}
    if name == "redis":
        await _flush_redis(redis_url())
    url, options = await store_url(name, "keepup", tmp)
    return await keep_up_on(name, url, options, writers, seconds)


async def keep_up_on(name: str, url: str, options: dict[str, Any], writers: int, seconds: float) -> dict[str, Any]:
    """The keep-up run on the store at ``url`` as it is (``bench.scale`` runs it on a full table)."""
    state = StateManager.from_url(url, **options)
    try:
        start_rev = await state.revision()
        delivered = 0
        async with state.watch() as changes:
            procs = [_spawn(url, options, "flood", str(w), str(seconds)) for w in range(writers)]
            t0 = time.perf_counter()
            done_at: float | None = None
            written = None

            async def reap() -> None:
                nonlocal done_at
                await asyncio.gather(*(asyncio.to_thread(p.wait) for p in procs))
                done_at = time.perf_counter()

            reaper = asyncio.ensure_future(reap())
            last_at = t0
            async with asyncio.timeout(seconds + 120):
                while True:
                    try:
                        await asyncio.wait_for(anext(changes), 2.0 if done_at is not None else 30.0)
                    except TimeoutError:
                        if done_at is not None:
                            break  # the writers are done and nothing more came
                        raise
                    delivered += 1
                    last_at = time.perf_counter()
            await reaper
            written = await state.revision() - start_rev
        replay_t0 = time.perf_counter()
        replayed = 0
        async with state.watch(since=start_rev) as changes:
            async with asyncio.timeout(120):
                while replayed < delivered:
                    await anext(changes)
                    replayed += 1
        replay_s = time.perf_counter() - replay_t0
    finally:
        await state.close()
    assert done_at is not None
    write_s = done_at - t0
    result = {
        "adapter": name,
        "writers": writers,
        "changes": delivered,
        "revisions_written": written,
        "write_rate_per_s": delivered / write_s if write_s else float("nan"),
        "delivered_rate_per_s": delivered / (last_at - t0),
        "drain_after_writers_s": max(0.0, last_at - done_at),
        "replay_rate_per_s": replayed / replay_s if replay_s else float("nan"),
    }
    print(
        f"keep-up  {name:9} {writers} writer processes: wrote {result['write_rate_per_s']:,.0f} changes/s,"
        f" watch delivered {result['delivered_rate_per_s']:,.0f}/s, drained {result['drain_after_writers_s']:.2f} s"
        f" after; replay {result['replay_rate_per_s']:,.0f}/s",
        flush=True,
    )
    return result


# --- report --------------------------------------------------------------------------------------------


def to_markdown(results: dict[str, Any]) -> str:
    out = [
        f"Run {results['started_utc']} (`{results['command']}`).",
        "",
        "**Cost of recording changes** (ops/s with `changes: on` / `off`, same workload, alternating slices;"
        f" target >= {TARGET_OVERHEAD}):",
        "",
        "| backend | workload | tasks | on ops/s | off ops/s | on/off | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results["overhead"]:
        verdict = "met" if r["ratio"] >= TARGET_OVERHEAD else "missed"
        out.append(
            f"| {r['adapter']} | {r['workload']} | {r['concurrency']} | {r['on_ops_per_s']:,.0f} |"
            f" {r['off_ops_per_s']:,.0f} | {r['ratio']:.2f} | {verdict} |"
        )
    out += [
        "",
        f"**Delivery delay** from a writer process's `set` call to a watch in another process (target p99 <"
        f" {TARGET_P99_S * 1000:.0f} ms):",
        "",
        "| backend | changes | rate | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    out += [delay_row(r) for r in results["latency"] if "skipped" not in r]
    out += [
        "",
        f"**Keep-up**: writer processes flooding `set_many(100)`, one watch of every scope (target >="
        f" {TARGET_KEEP_UP:,.0f} changes/s delivered):",
        "",
        "| backend | writers | changes | written/s | delivered/s | drained after | replay/s | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results["keep_up"]:
        if "skipped" in r:
            continue
        verdict = "met" if r["delivered_rate_per_s"] >= TARGET_KEEP_UP else "missed"
        out.append(
            f"| {r['adapter']} | {r['writers']} | {r['changes']:,} | {r['write_rate_per_s']:,.0f} |"
            f" {r['delivered_rate_per_s']:,.0f} | {r['drain_after_writers_s']:.2f} s | {r['replay_rate_per_s']:,.0f}"
            f" | {verdict} |"
        )
    return "\n".join(out) + "\n"


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 18 this run measured: overhead per row, keep-up and delay per backend."""
    out = [
        target(
            f"{r['adapter']} {r['workload']} c={r['concurrency']}: changes on / off >= {TARGET_OVERHEAD}",
            round(r["ratio"], 3),
            r["ratio"] >= TARGET_OVERHEAD,
            r.get("profile"),
        )
        for r in results["overhead"]
    ]
    for r in results["keep_up"]:
        if "skipped" not in r:
            rate = r["delivered_rate_per_s"]
            out.append(
                target(
                    f"{r['adapter']} one watch keeps up: delivered >= {TARGET_KEEP_UP:,.0f} changes/s",
                    round(rate),
                    rate >= TARGET_KEEP_UP,
                    r.get("profile"),
                )
            )
    for r in results["latency"]:
        if "skipped" not in r:
            p99 = r["p99_ms"]
            out.append(
                target(
                    f"{r['adapter']} delivery delay p99 < {TARGET_P99_S * 1000:.0f} ms",
                    round(p99, 1),
                    p99 < TARGET_P99_S * 1000,
                    r.get("profile"),
                )
            )
    return out


async def _keep_up_profiled(name: str, tmp: Path, writers: int, seconds: float) -> dict[str, Any]:
    """The keep-up run; missed, once more under the profiler (the watch's process)."""
    result = await keep_up(name, tmp, writers, seconds)
    if "skipped" not in result and not result["delivered_rate_per_s"] >= TARGET_KEEP_UP:
        again: dict[str, Any] = {}

        async def rerun() -> None:
            again.update(await keep_up(name, tmp, writers, seconds))

        result["profile"] = await profiled(f"feed-{name}-keep-up", f"{name} keep-up watch process", rerun())
    return result


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    adapters = [a for a in args.adapters.split(",") if a]
    concurrency = [int(c) for c in args.concurrency.split(",")]
    results: dict[str, Any] = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench.feed " + " ".join(sys.argv[1:]),
        "overhead": [],
        "latency": [],
        "keep_up": [],
    }
    with tempfile.TemporaryDirectory(prefix="motia-state-feed-") as tmp:
        for name in adapters:
            results["overhead"] += await overhead(
                name, Path(tmp), concurrency, args.seconds, args.runs, not args.no_profile
            )
            results["latency"].append(await latency(name, Path(tmp), args.rate, args.latency_changes))
            if args.no_profile:
                results["keep_up"].append(await keep_up(name, Path(tmp), args.writers, args.flood_seconds))
            else:
                results["keep_up"].append(await _keep_up_profiled(name, Path(tmp), args.writers, args.flood_seconds))
        if "redis" in adapters:
            await _flush_redis(redis_url())  # leave nothing behind
    results["targets"] = evaluate_targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "writer":
        asyncio.run(_writer(argv[1], json.loads(argv[2]), argv[3], argv[4], argv[5]))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__.split("\n")[0])
    p.add_argument("--adapters", default=",".join(ADAPTERS))
    p.add_argument("--concurrency", default="1,16")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=200.0, help="changes/s of the paced writer (latency)")
    p.add_argument("--latency-changes", type=int, default=1000)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--flood-seconds", type=float, default=5.0)
    p.add_argument("--quick", action="store_true", help="short runs")
    p.add_argument("--no-profile", action="store_true", help="no profile of a missed target")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.seconds, args.latency_changes, args.flood_seconds = 1, 0.3, 300, 2.0
    results = asyncio.run(_run(args))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "feed.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    md = to_markdown(results)
    (OUT / "feed.md").write_text(md, encoding="utf-8")
    print()
    print(md)
    print_targets(results["targets"])
    print(f"results: {OUT / 'feed.json'} and {OUT / 'feed.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
