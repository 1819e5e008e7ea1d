"""``python -m bench.triggers``: how many changes durable triggers handle per second, and how soon (SPEC §11).

- **throughput**: 1 and 4 ``motia-state worker`` processes run a no-op trigger; once they have split the
  partitions, 20,000 changes over 2,000 keys are written (``set_many`` of 100); the rate is changes handled
  per second from the first write to the last one recorded as handled (target >= 2,000/s with 4 workers on
  Postgres and Redis);
- **delay**: one worker; a writer sets a key every 5 ms with its send time in the value; the handler notes
  how long after the write it ran: p50/p99/max.

The targets are written as a top-level ``targets`` list of ``triggers.json`` and printed as met/MISSED lines;
a missed throughput is run again with one worker under pyinstrument (``bench/results/profile-triggers-*.txt``).

Private resources only: a SQLite file in a temporary directory, Postgres database
``motia_state_bench_triggers``, Redis db 3 (flushed; ``MOTIA_STATE_BENCH_TRIGGERS_REDIS_URL`` overrides it;
db 9 is the main benchmark's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.feed import ROOT, _flush_redis, _reset_pg, delay_row, delay_summary, print_targets, target
from motia_state import StateManager

ADAPTERS: Final = ("sqlite", "postgres", "redis")
OUT: Final = Path(__file__).parent / "results"
TARGET: Final = 2000.0
SCOPE: Final = "bench-trigger"
TARGET_ADAPTERS: Final = ("postgres", "redis")


def redis_url() -> str:
    """This benchmark's own Redis db (flushed), not the main benchmark's db 9."""
    return os.environ.get("MOTIA_STATE_BENCH_TRIGGERS_REDIS_URL", "redis://127.0.0.1:6379/3")


async def _store(name: str, tmp: Path) -> str:
    if name == "sqlite":
        path = tmp / f"triggers-{time.monotonic_ns()}.db"
        return f"sqlite:///{path}"
    if name == "postgres":
        return await _reset_pg("motia_state_bench_triggers")
    await _flush_redis(redis_url())
    return redis_url()


def _start(
    url: str, log: Path, n: int, trigger: str = "bench", profile: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """``n`` worker processes of trigger ``trigger``; the first one profiled into ``profile`` if given."""
    root = str(ROOT)
    env = {
        **os.environ,
        "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "BENCH_TRIGGER_URL": url,
        "BENCH_TRIGGER_LOG": str(log),
        "BENCH_TRIGGER_NAME": trigger,
    }
    script = str(Path(sys.executable).with_name("motia-state"))
    procs = []
    for i in range(n):
        extra = {"BENCH_TRIGGER_PROFILE": str(profile)} if profile is not None and i == 0 else {}
        procs.append(
            subprocess.Popen(
                [script, "worker", "bench.trigger_app:state"],
                env={**env, **extra},
                cwd=root,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


async def _status(state: StateManager, trigger: str = "bench") -> Any:
    statuses = await state.adapter.trigger_store().status()  # type: ignore[attr-defined]
    return next((s for s in statuses if s.name == trigger), None)


async def _balanced(state: StateManager, workers: int, trigger: str = "bench") -> None:
    async with asyncio.timeout(60):
        while True:
            status = await _status(state, trigger)
            if status is not None and len(status.owners) >= workers:
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # a rebalancing round (lease 3 s / 3) and the surplus handed over


async def throughput(name: str, tmp: Path, workers: int, changes: int, profile: Path | None = None) -> dict[str, Any]:
    url = await _store(name, tmp)
    return await throughput_on(name, url, tmp, workers, changes, profile=profile)


async def throughput_on(
    name: str, url: str, tmp: Path, workers: int, changes: int, *, trigger: str = "bench", profile: Path | None = None
) -> dict[str, Any]:
    """The throughput on the store at ``url`` as it is (``bench.scale`` runs it on a full table); a ``trigger``
    name new to the store starts at its current revision."""
    state = StateManager.from_url(url)
    await state.connect()
    procs = _start(url, tmp / "unused.log", workers, trigger, profile)
    try:
        await _balanced(state, workers, trigger)
        base = (await _status(state, trigger)).handled
        keys = 2000
        batch = {f"k{i:04d}": {"i": i} for i in range(100)}
        t0 = time.perf_counter()
        for n in range(changes // 100):
            await state.set_many(SCOPE, {f"{k}-{n % (keys // 100)}": v for k, v in batch.items()})
        written = time.perf_counter() - t0
        async with asyncio.timeout(300):
            while (await _status(state, trigger)).handled - base < changes:  # noqa: ASYNC110 (another process's progress)
                await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
    finally:
        _stop(procs)
        await state.close()
    result = {
        "adapter": name,
        "workers": workers,
        "changes": changes,
        "write_seconds": written,
        "seconds": elapsed,
        "handled_per_s": changes / elapsed,
    }
    print(
        f"throughput {name:9} {workers} worker(s): {changes} changes handled in {elapsed:.2f} s"
        f" ({result['handled_per_s']:,.0f}/s; written in {written:.2f} s)",
        flush=True,
    )
    return result


async def delay(name: str, tmp: Path, rate: float, count: int) -> dict[str, Any]:
    url = await _store(name, tmp)
    log = tmp / f"delay-{name}.log"
    log.unlink(missing_ok=True)
    state = StateManager.from_url(url)
    await state.connect()
    procs = _start(url, log, 1)
    try:
        await _balanced(state, 1)
        start = time.time()
        for i in range(count):
            wait = start + i / rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await state.set(SCOPE, f"d{i % 20}", {"i": i, "sent": time.time()})
        async with asyncio.timeout(120):
            while not log.exists() or len(log.read_text().splitlines()) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        _stop(procs)
        await state.close()
    delays = [float(x) for x in log.read_text().split()]
    result = {"adapter": name, "changes": count, "rate_per_s": rate, **delay_summary(delays)}
    print(
        f"delay      {name:9} write to handler: p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms"
        f"  max {result['max_ms']:.1f} ms",
        flush=True,
    )
    return result


def to_markdown(results: dict[str, Any]) -> str:
    out = [
        f"Run {results['started_utc']} (`{results['command']}`).",
        "",
        "| backend | workers | changes | seconds | handled/s | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results["throughput"]:
        target = (
            ""
            if r["workers"] != 4 or r["adapter"] == "sqlite"
            else f">= {TARGET:,.0f}/s " + ("met" if r["handled_per_s"] >= TARGET else "missed")
        )
        out.append(
            f"| {r['adapter']} | {r['workers']} | {r['changes']:,} | {r['seconds']:.2f} | {r['handled_per_s']:,.0f}"
            f" | {target} |"
        )
    out += ["", "| backend | changes | rate | p50 ms | p99 ms | max ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    out += [delay_row(r) for r in results["delay"]]
    return "\n".join(out) + "\n"


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 18's trigger target: >= 2,000 changes/s handled with 4 workers on Postgres and Redis."""
    return [
        target(
            f"{r['adapter']} triggers, 4 workers: handled >= {TARGET:,.0f} changes/s",
            round(r["handled_per_s"]),
            r["handled_per_s"] >= TARGET,
            r.get("profile"),
        )
        for r in results["throughput"]
        if r["workers"] == 4 and r["adapter"] in TARGET_ADAPTERS
    ]


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m bench.triggers " + " ".join(sys.argv[1:]),
        "throughput": [],
        "delay": [],
    }
    with tempfile.TemporaryDirectory(prefix="motia-state-triggers-") as tmp:
        for name in [a for a in args.adapters.split(",") if a]:
            for workers in (1, 4):
                r = await throughput(name, Path(tmp), workers, args.changes)
                if workers == 4 and name in TARGET_ADAPTERS and r["handled_per_s"] < TARGET and not args.no_profile:
                    # Once more with the first worker under pyinstrument: where a worker's time goes.
                    path = OUT / f"profile-triggers-{name}-4workers.txt"
                    again = await throughput(name, Path(tmp), workers, args.changes, profile=path)
                    r["profile"] = str(path.relative_to(ROOT))
                    r["profiled_run_handled_per_s"] = again["handled_per_s"]
                results["throughput"].append(r)
            results["delay"].append(await delay(name, Path(tmp), args.rate, args.delay_changes))
            if name == "redis":
                await _flush_redis(redis_url())  # leave nothing behind
    results["targets"] = evaluate_targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.triggers", description=__doc__.split("\n")[0])
    p.add_argument("--adapters", default=",".join(ADAPTERS))
    p.add_argument("--changes", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--delay-changes", type=int, default=1000)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-profile", action="store_true", help="no profile of a missed target")
    args = p.parse_args(argv)
    if args.quick:
        args.changes, args.delay_changes = 4000, 200
    results = asyncio.run(_run(args))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "triggers.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    md = to_markdown(results)
    (OUT / "triggers.md").write_text(md, encoding="utf-8")
    print()
    print(md)
    print_targets(results["targets"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
