"""Wall time of one reading ``motia-state`` call on an up-to-date store (SPEC §9: under 0.15 s).

Each call is a fresh process, as a user types it: interpreter start, imports, connect, one read, exit.
The store is written and migrated once first; then ``get``, ``keys`` and ``list SCOPE`` are each run
``--runs`` times, interleaved across backends so that a noisy moment hits them all alike.

    python -m bench.cli_call            # 10 runs each; results/cli-call.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from bench.backends import pg_url, redis_url

TARGET_SECONDS: Final = 0.15
TARGETED: Final = ("sqlite", "postgres")  # the two the spec's target names
CALLS: Final = (("get", "bench-cli", "k1"), ("keys", "bench-cli"), ("list", "bench-cli"))
SCRIPT: Final = Path(sys.executable).with_name("motia-state")


def _urls(tmp: Path) -> dict[str, str]:
    return {
        "sqlite": f"sqlite:///{tmp / 'cli.db'}",
        "postgres": pg_url("motia_state_bench_cli"),
        "redis": redis_url(),
    }


def _run(url: str, *args: str, cwd: Path) -> float:
    # As on a user's machine: bytecode is cached (some shells here set PYTHONDONTWRITEBYTECODE, which would make
    # every call compile the package again), and no MOTIA_STATE_URL from the caller.
    env = {k: v for k, v in os.environ.items() if k not in ("MOTIA_STATE_URL", "PYTHONDONTWRITEBYTECODE")}
    start = time.perf_counter()
    done = subprocess.run([str(SCRIPT), "--url", url, *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"motia-state {' '.join(args)} failed: {done.stderr.strip()}")
    return elapsed


def _floor(runs: int) -> float:
    """Median wall seconds of ``python -c "import asyncio"``: what any async CLI costs before its own work."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import asyncio"], check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(runs: int) -> dict[str, Any]:
    """Median and worst wall seconds per backend and command."""
    import asyncio

    from bench.backends import ensure_pg_database

    asyncio.run(ensure_pg_database("motia_state_bench_cli"))
    with tempfile.TemporaryDirectory(prefix="motia-state-bench-cli-") as folder:
        tmp = Path(folder)
        urls = _urls(tmp)
        for url in urls.values():  # writes, and migrates the SQL stores, before anything is timed
            for i in range(3):
                _run(url, "set", "bench-cli", f"k{i}", json.dumps({"n": i, "status": "ok"}), cwd=tmp)
        times: dict[str, dict[str, list[float]]] = {b: {c[0]: [] for c in CALLS} for b in urls}
        for _ in range(runs):
            for call in CALLS:
                for backend, url in urls.items():
                    times[backend][call[0]].append(_run(url, *call, cwd=tmp))
    rows = []
    for backend, by_call in times.items():
        for command, samples in by_call.items():
            median = statistics.median(samples)
            rows.append(
                {
                    "backend": backend,
                    "command": command,
                    "median_s": round(median, 4),
                    "max_s": round(max(samples), 4),
                    "runs": len(samples),
                    "target": f"< {TARGET_SECONDS} s" if backend in TARGETED else "",
                    "met": (median < TARGET_SECONDS) if backend in TARGETED else None,
                }
            )
    return {"rows": rows, "python": sys.version.split()[0], "python_import_asyncio_s": round(_floor(runs), 4)}


def to_markdown(result: dict[str, Any]) -> str:
    """The table for BENCHMARKS.md."""
    lines = ["| backend | command | median (s) | max (s) | runs | target |", "| --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        verdict = "" if r["met"] is None else (" met" if r["met"] else " **missed**")
        lines.append(
            f"| {r['backend']} | {r['command']} | {r['median_s']:.3f} | {r['max_s']:.3f} | {r['runs']} |"
            f" {r['target']}{verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_call", description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="calls per backend and command (10)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli-call.json")
    args = parser.parse_args(argv)
    result = measure(args.runs)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(to_markdown(result))
    print(f"\n(the interpreter starting and importing asyncio alone: {result['python_import_asyncio_s']:.3f} s)")
    return 0  # a report: met/missed is in the table


if __name__ == "__main__":
    raise SystemExit(main())
