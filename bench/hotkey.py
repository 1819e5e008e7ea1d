"""``python -m bench.hotkey``: many updates of ONE key at once (a counter every step of a flow bumps).

- **one process**: 500 tasks each call ``update`` (increment one field) of the same key at the same moment;
- **8 processes**: 8 processes x 100 tasks, all on the same key, started together (a start time they wait for).

Per round: updates per second from the start to the last one done, each caller's latency (p50/p99/max), and
that the counter ends exactly at the number of updates (nothing lost). Median over rounds. Targets (issue 18): on
Redis at least half of Postgres's rate in each scenario, with p99 under 1 s (before: a compare-and-set retry
storm, ~5.8 s for the one-process burst). A missed target is run again under pyinstrument.

Private resources only: Postgres database ``motia_state_bench_hot``, Redis db 6 (flushed;
``MOTIA_STATE_BENCH_HOT_REDIS_URL`` overrides it), SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.feed import ROOT, _flush_redis, _reset_pg, print_targets, profiled, target
from motia_state import StateManager

__all__ = ["main"]

ADAPTERS: Final = ("memory", "sqlite", "postgres", "redis")
OUT: Final = Path(__file__).parent / "results"
SCOPE: Final = "bench-hot"
KEY: Final = "counter"
INC: Final = [{"type": "increment", "path": "n", "by": 1}]
#: Redis's rate against Postgres's in each scenario, and the p99 bound.
TARGET_RATIO: Final = 0.5
TARGET_P99_S: Final = 1.0


def redis_url() -> str:
    return os.environ.get("MOTIA_STATE_BENCH_HOT_REDIS_URL", "redis://127.0.0.1:6379/6")


async def _store(name: str, tmp: Path) -> str:
    if name == "memory":
        return "memory://"
    if name == "sqlite":
        return f"sqlite:///{tmp / f'hot-{time.monotonic_ns()}.db'}"
    if name == "postgres":
        return await _reset_pg("motia_state_bench_hot")
    await _flush_redis(redis_url())
    return redis_url()


async def _burst(state: StateManager, tasks: int, start_at: float) -> list[float]:
    """``tasks`` updates of the key at once, from wall time ``start_at``: each one's seconds from the start."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()

    async def one() -> float:
        await state.update(SCOPE, KEY, INC)
        return time.perf_counter() - t0

    return list(await asyncio.gather(*(one() for _ in range(tasks))))


def _summary(latencies: list[float], updates: int, seconds: float, final: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "updates": updates,
        "seconds": seconds,
        "per_s": updates / seconds if seconds > 0 else 0.0,
        "p50_s": ordered[len(ordered) // 2],
        "p99_s": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max_s": ordered[-1],
        "lost": updates - final,
    }


async def one_process(url: str, tasks: int) -> dict[str, Any]:
    """One round of ``tasks`` updates at once in this process, on a fresh counter."""
    state = StateManager.from_url(url, changes=False)
    try:
        await state.set(SCOPE, KEY, {"n": 0})
        lat = await _burst(state, tasks, time.time())
        final = (await state.get(SCOPE, KEY))["n"]
    finally:
        await state.close()
    return _summary(lat, tasks, max(lat), final)


async def processes(url: str, procs: int, tasks: int) -> dict[str, Any]:
    """One round: ``procs`` worker processes x ``tasks`` updates at once, all started at one wall time."""
    if url == "memory://":
        raise ValueError("a memory store is not shared between processes")
    state = StateManager.from_url(url, changes=False)
    try:
        await state.set(SCOPE, KEY, {"n": 0})
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = ("-m", "bench.hotkey", "--worker", url, str(tasks))
        pipe = asyncio.subprocess.PIPE
        workers = [
            await asyncio.create_subprocess_exec(sys.executable, *args, stdin=pipe, stdout=pipe, env=env, cwd=ROOT)
            for _ in range(procs)
        ]
        try:
            for w in workers:  # each has imported, connected and read the key once
                assert w.stdout is not None
                if (await asyncio.wait_for(w.stdout.readline(), 60)).strip() != b"ready":
                    raise RuntimeError("a hot-key worker did not start")
            start_at = time.time() + 0.2
            for w in workers:  # every worker told before any is waited for
                assert w.stdin is not None
                w.stdin.write(f"{start_at!r}\n".encode())
                w.stdin.close()
            lat: list[float] = []
            for w in workers:
                out, _ = await asyncio.wait_for(w.communicate(), 120)
                if w.returncode != 0:
                    raise RuntimeError(f"a hot-key worker failed (exit {w.returncode})")
                lat += json.loads(out)
        finally:
            for w in workers:
                if w.returncode is None:
                    w.kill()
        final = (await state.get(SCOPE, KEY))["n"]
    finally:
        await state.close()
    # Every worker timed from the same wall-clock start: the round lasts until the last update is done.
    return _summary(lat, procs * tasks, max(lat), final)


async def _worker(url: str, tasks: int) -> None:
    state = StateManager.from_url(url, changes=False)
    try:
        await state.get(SCOPE, KEY)  # connected (and the statements prepared) before the start
        print("ready", flush=True)
        start_at = float(await asyncio.to_thread(sys.stdin.readline))
        lat = await _burst(state, tasks, start_at)
        # Timed from the common start, not from this process's wake-up, so that the processes' latencies add up.
        late = max(0.0, time.time() - start_at - max(lat))
        print(json.dumps([x + late for x in lat]), flush=True)
    finally:
        await state.close()


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: statistics.median(r[k] for r in rounds) for k in ("per_s", "p50_s", "p99_s", "max_s", "seconds")}
    out["updates"] = rounds[0]["updates"]
    out["lost"] = max(r["lost"] for r in rounds)
    out["rounds_per_s"] = [round(r["per_s"]) for r in rounds]
    return out


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    adapters = [a.strip() for a in args.adapters.split(",") if a.strip()]
    results: dict[str, Any] = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"tasks": args.tasks, "procs": args.procs, "proc_tasks": args.proc_tasks, "rounds": args.rounds},
        "one_process": {},
        "processes": {},
        "errors": [],
    }
    with tempfile.TemporaryDirectory(prefix="motia-state-hot-") as tmp:
        for name in adapters:
            try:
                url = await _store(name, Path(tmp))
                rounds = [await one_process(url, args.tasks) for _ in range(args.rounds)]
                results["one_process"][name] = _median(rounds)
                print(f"{name}: one process, {args.tasks} tasks: {_line(results['one_process'][name])}", flush=True)
                if name != "memory":
                    rounds = [await processes(url, args.procs, args.proc_tasks) for _ in range(args.rounds)]
                    results["processes"][name] = _median(rounds)
                    print(
                        f"{name}: {args.procs} processes x {args.proc_tasks} tasks: "
                        + _line(results["processes"][name]),
                        flush=True,
                    )
            except Exception as exc:  # a server down: say so, go on
                msg = f"{name}: {type(exc).__name__}: {exc}"
                print(msg, file=sys.stderr)
                results["errors"].append(msg)
        results["targets"] = await _targets(results, args, Path(tmp))
    return results


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['per_s']:,.0f} updates/s, p50 {r['p50_s'] * 1000:.0f} ms, p99 {r['p99_s'] * 1000:.0f} ms,"
        f" max {r['max_s'] * 1000:.0f} ms, lost {r['lost']}"
    )


async def _targets(results: dict[str, Any], args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for scenario, label in (
        ("one_process", f"one process x {args.tasks} tasks"),
        ("processes", f"{args.procs} processes x {args.proc_tasks} tasks"),
    ):
        redis, pg = results[scenario].get("redis"), results[scenario].get("postgres")
        if redis is None or pg is None:
            continue
        ratio = redis["per_s"] / pg["per_s"]
        met = ratio >= TARGET_RATIO and redis["p99_s"] < TARGET_P99_S and redis["lost"] == 0
        profile = None
        if not met and args.profile_misses and scenario == "one_process":
            url = await _store("redis", tmp)
            profile = await profiled(
                "hotkey-redis", f"# redis hot key, one process x {args.tasks}\n", one_process(url, args.tasks)
            )
        out.append(
            target(
                f"redis hot key, {label}: >= {TARGET_RATIO}x postgres's rate, p99 < {TARGET_P99_S:.0f} s, none lost",
                f"{ratio:.2f}x ({redis['per_s']:,.0f} vs {pg['per_s']:,.0f}/s), p99 {redis['p99_s'] * 1000:.0f} ms",
                met,
                profile,
            )
        )
    return out


def to_markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Run started {results['started_utc']}.",
        "",
        "| backend | scenario | updates | updates/s | p50 ms | p99 ms | max ms | lost | rounds (updates/s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    s = results["settings"]
    for scenario, label in (
        ("one_process", f"1 process x {s['tasks']} tasks"),
        ("processes", f"{s['procs']} processes x {s['proc_tasks']} tasks"),
    ):
        for name, r in results[scenario].items():
            lines.append(
                f"| {name} | {label} | {r['updates']} | {r['per_s']:,.0f} | {r['p50_s'] * 1000:.0f}"
                f" | {r['p99_s'] * 1000:.0f} | {r['max_s'] * 1000:.0f} | {r['lost']}"
                f" | {', '.join(f'{x:,}' for x in r['rounds_per_s'])} |"
            )
    lines += ["", "| target | measured | |", "| --- | --- | --- |"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {t['value']} | {'met' if t['met'] else '**missed**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        asyncio.run(_worker(argv[1], int(argv[2])))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.hotkey", description=__doc__)
    p.add_argument("--adapters", default=",".join(ADAPTERS))
    p.add_argument("--tasks", type=int, default=500, help="updates at once in one process (500)")
    p.add_argument("--procs", type=int, default=8, help="processes in the second scenario (8)")
    p.add_argument("--proc-tasks", type=int, default=100, help="updates at once in each of them (100)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per scenario; the median is reported (5)")
    p.add_argument("--quick", action="store_true", help="2 rounds")
    p.add_argument("--no-profile", dest="profile_misses", action="store_false", help="do not profile a miss")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 2
    results = asyncio.run(_run(args))
    print()
    print_targets(results["targets"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hotkey.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.out / "hotkey.md").write_text(to_markdown(results), encoding="utf-8")
    print(f"results: {args.out / 'hotkey.json'} (and hotkey.md)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
