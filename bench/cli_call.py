"""Wall time of one reading ``motia-state`` call on an up-to-date store (SPEC §9: under 0.15 s).

Each call is a fresh process, as a user types it: interpreter start, imports, connect, one read, exit.
The store is written and migrated once first; then ``get``, ``keys`` and ``list SCOPE`` are each run
``--runs`` times, interleaved across backends so that a noisy moment hits them all alike. The memory store
is a fresh empty one per call: its ``get`` is the not-found path (exit 1).

The JSON's ``targets`` holds one entry per targeted backend: its slowest command's median, met when under
the target.

    python -m bench.cli_call            # 10 runs each; results/cli-call.json
    python -m bench.cli_call --pg-db motia_state_bench_cli --redis-url redis://127.0.0.1:6379/1

``--baseline DIR`` also times another version of the package in the same run, interleaved (rows
``BACKEND@baseline``; the targets are the installed version's): DIR holds its ``motia_state/``, e.g.
``git archive COMMIT motia_state | tar -x -C DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.backends import pg_url

TARGET_SECONDS: Final = 0.15
TARGETED: Final = ("sqlite", "postgres")  # the two the spec's target names
CALLS: Final = (("get", "bench-cli", "k1"), ("keys", "bench-cli"), ("list", "bench-cli"))
SCRIPT: Final = Path(sys.executable).with_name("motia-state")
PG_DB: Final = "motia_state_bench_cli"
# A database of its own: the other benchmarks flush theirs.
REDIS_URL: Final = os.environ.get("MOTIA_STATE_BENCH_CLI_REDIS_URL", "redis://127.0.0.1:6379/1")


def _urls(tmp: Path, pg_db: str, redis: str) -> dict[str, str]:
    return {
        "sqlite": f"sqlite:///{tmp / 'cli.db'}",
        "postgres": pg_url(pg_db),
        "redis": redis,
        "memory": "memory://",
    }


def _run(url: str, *args: str, cwd: Path, source: Path | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one call."""
    # As on a user's machine: bytecode is cached (some shells here set PYTHONDONTWRITEBYTECODE, which would make
    # every call compile the package again), and no MOTIA_STATE_URL from the caller.
    env = {k: v for k, v in os.environ.items() if k not in ("MOTIA_STATE_URL", "PYTHONDONTWRITEBYTECODE")}
    if source is not None:  # ahead of the installed package on sys.path
        env["PYTHONPATH"] = str(source)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(SCRIPT), "--url", url, *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != (1 if url == "memory://" and args[0] == "get" else 0):  # memory: always empty
        raise RuntimeError(f"motia-state {' '.join(args)} failed: {done.stderr.strip()}")
    return elapsed, cpu


def _floor(runs: int, code: str, *args: str) -> float:
    """Median wall seconds of ``python -c CODE``: e.g. what any async CLI costs before its own work."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, *args], check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# The least a Python process can do for the same Postgres read: asyncpg, one connection, one query, close.
_RAW_PG_READ: Final = """
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    await conn.fetchval("SELECT value FROM motia_state WHERE scope = 'bench-cli' AND key = 'k1'")
    await conn.close()
asyncio.run(main())
"""
RESULTS: Final = Path(__file__).parent / "results"


def _profile(backend: str, url: str, call: tuple[str, ...], cwd: Path) -> str:
    """Where one call's imports go (``python -X importtime``, 1 ms and more), written next to the results."""
    env = {k: v for k, v in os.environ.items() if k not in ("MOTIA_STATE_URL", "PYTHONDONTWRITEBYTECODE")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(SCRIPT), "--url", url, *call],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    kept = [lines[0]] + [line for line in lines[1:] if int(line.split("|")[1]) >= 1000] if lines else []
    path = RESULTS / f"profile-cli-call-{backend}.txt"
    path.write_text(f"motia-state --url {backend} {' '.join(call)}\n" + "\n".join(kept) + "\n")
    return str(path.relative_to(Path(__file__).parent.parent))


def measure(runs: int, pg_db: str = PG_DB, redis: str = REDIS_URL, baseline: Path | None = None) -> dict[str, Any]:
    """Median and worst wall seconds per backend and command, and the targets."""
    import asyncio

    from bench.backends import ensure_pg_database

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    asyncio.run(ensure_pg_database(pg_db))
    with tempfile.TemporaryDirectory(prefix="motia-state-bench-cli-") as folder:
        tmp = Path(folder)
        urls = _urls(tmp, pg_db, redis)
        for url in (u for u in urls.values() if u != "memory://"):  # written, and the SQL stores migrated, first
            for i in range(3):
                _run(url, "set", "bench-cli", f"k{i}", json.dumps({"n": i, "status": "ok"}), cwd=tmp)
        raw_pg = _floor(runs, _RAW_PG_READ, urls["postgres"])
        versions: dict[str, Path | None] = {"": None} if baseline is None else {"": None, "@baseline": baseline}
        # Per backend and command: (wall, cpu) per call.
        times: dict[str, dict[str, list[tuple[float, float]]]] = {
            b + v: {c[0]: [] for c in CALLS} for b in urls for v in versions
        }
        for _ in range(runs):
            for call in CALLS:
                for backend, url in urls.items():
                    for version, source in versions.items():
                        times[backend + version][call[0]].append(_run(url, *call, cwd=tmp, source=source))
        found = targets(_rows(times))
        for t in found:
            if not t["met"]:
                backend = t["target"].split(":")[0]
                t["profile"] = _profile(backend, urls[backend], next(c for c in CALLS if c[0] == t["command"]), tmp)
    return {
        "started_utc": started,
        "targets": found,
        "rows": _rows(times),
        "python": sys.version.split()[0],
        "python_start_s": round(_floor(runs, "pass"), 4),
        "python_import_asyncio_s": round(_floor(runs, "import asyncio"), 4),
        "python_asyncpg_read_s": round(raw_pg, 4),
    }


def _rows(times: dict[str, dict[str, list[tuple[float, float]]]]) -> list[dict[str, Any]]:
    rows = []
    for backend, by_call in times.items():
        for command, calls in by_call.items():
            samples = [wall for wall, _ in calls]
            median = statistics.median(samples)
            rows.append(
                {
                    "backend": backend,
                    "command": command,
                    "median_s": round(median, 4),
                    "max_s": round(max(samples), 4),
                    # Less moved by other processes than wall time (a shared machine's noise).
                    "cpu_median_s": round(statistics.median(cpu for _, cpu in calls), 4),
                    "runs": len(samples),
                    "target": f"< {TARGET_SECONDS} s" if backend in TARGETED else "",
                    "met": (median < TARGET_SECONDS) if backend in TARGETED else None,
                }
            )
    return rows


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One target per targeted backend: the median of its slowest reading command."""
    out = []
    for backend in TARGETED:
        slowest = max((r for r in rows if r["backend"] == backend), key=lambda r: r["median_s"])
        out.append(
            {
                "target": f"{backend}: one reading CLI call < {TARGET_SECONDS} s (median of {slowest['runs']})",
                "value": slowest["median_s"],
                "command": slowest["command"],
                "met": slowest["median_s"] < TARGET_SECONDS,
            }
        )
    return out


def to_markdown(result: dict[str, Any]) -> str:
    """The table for BENCHMARKS.md."""
    lines = [
        "| backend | command | median (s) | max (s) | CPU median (s) | runs | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        verdict = "" if r["met"] is None else (" met" if r["met"] else " **missed**")
        lines.append(
            f"| {r['backend']} | {r['command']} | {r['median_s']:.3f} | {r['max_s']:.3f} | {r['cpu_median_s']:.3f} |"
            f" {r['runs']} |"
            f" {r['target']}{verdict} |"
        )
    lines.append("")
    for t in result.get("targets", []):
        where = f"; profile: `{t['profile']}`" if t.get("profile") else ""
        lines.append(
            f"- {'met' if t['met'] else '**missed**'}: {t['target']}: {t['value']:.3f} s (`{t['command']}`{where})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_call", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="calls per backend and command (10)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli-call.json")
    parser.add_argument("--pg-db", default=PG_DB, help=f"Postgres database to use, created if missing ({PG_DB})")
    parser.add_argument(
        "--redis-url", default=REDIS_URL, help=f"Redis database to use ($MOTIA_STATE_BENCH_CLI_REDIS_URL, {REDIS_URL})"
    )
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR", help="also time motia_state from DIR")
    args = parser.parse_args(argv)
    result = measure(args.runs, args.pg_db, args.redis_url, args.baseline)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(to_markdown(result))
    print(
        f"\n(the interpreter starting alone: {result['python_start_s']:.3f} s; starting and importing asyncio:"
        f" {result['python_import_asyncio_s']:.3f} s; a Python asyncpg one-liner doing the Postgres read:"
        f" {result['python_asyncpg_read_s']:.3f} s)"
    )
    return 0  # a report: met/missed is in the table


if __name__ == "__main__":
    raise SystemExit(main())
