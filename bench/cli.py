"""``python -m bench``: run the workloads on each adapter and its raw baseline, print, save JSON and a chart."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.backends import ADAPTERS, Backend, make_backend
from bench.core import WORKLOADS, Measurement, Subject, measure_pair, median_summary
from bench.machine import machine_info
from bench.report import evaluate_targets, format_rows, format_scale, format_targets, to_markdown, write_chart

__all__ = ["main"]

DEFAULT_OUT = Path(__file__).parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--adapters", default=",".join(ADAPTERS), help="comma-separated, from: " + ", ".join(ADAPTERS))
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, from: " + ", ".join(WORKLOADS))
    p.add_argument("--concurrency", default="1,16", help="comma-separated task counts (default 1,16)")
    p.add_argument("--runs", type=int, default=3, help="runs per row; the median is reported (default 3)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per run (default 1.0; --quick 0.3)")
    p.add_argument(
        "--slices", type=int, default=4, help="each run alternates motia-state and raw in this many slices (4)"
    )
    p.add_argument("--quick", action="store_true", help="short runs (0.3 s), 1 run, small scale test")
    p.add_argument("--scale", dest="scale", action="store_true", default=None, help="run the scale tests (default)")
    p.add_argument("--no-scale", dest="scale", action="store_false", help="skip the scale tests")
    p.add_argument("--scale-rows", type=int, default=None, help="rows in the scale table (default 1,000,000)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for latest.json and ratios.png")
    p.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    p.add_argument(
        "--update-doc",
        type=Path,
        nargs="?",
        const=Path(__file__).parent.parent / "BENCHMARKS.md",
        default=None,
        help="also put the tables into BENCHMARKS.md (between its results markers)",
    )
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 1.0
    if args.quick and "--runs" not in (argv if argv is not None else sys.argv):
        args.runs = 1
    if args.scale is None:
        args.scale = True
    if args.scale_rows is None:
        args.scale_rows = 20_000 if args.quick else 1_000_000
    return args


def _names(text: str, allowed: Any, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)}; choose from {', '.join(allowed)}")
    return names


async def _row(
    backend: Backend, workload: str, concurrency: int, runs: int, seconds: float, slices: int
) -> dict[str, Any]:
    w = WORKLOADS[workload]
    by_subject: dict[str, list[Measurement]] = {"motia": [], "raw": []}
    subjects: list[Subject] = [backend.motia, backend.raw]
    for run in range(runs):
        # Both subjects work on the same store (same layout), prepared once per run; their timing
        # alternates in slices, and which goes first alternates by run, so drift hits both alike.
        await backend.raw.reset()
        first, second = subjects if run % 2 == 0 else subjects[::-1]
        m1, m2 = await measure_pair(first, second, w, concurrency, seconds, slices)
        by_subject[first.kind].append(m1)
        by_subject[second.kind].append(m2)
    motia = median_summary(by_subject["motia"])
    raw = median_summary(by_subject["raw"])
    ratio = motia["ops_per_s"] / raw["ops_per_s"] if raw["ops_per_s"] else float("nan")
    return {
        "adapter": backend.name,
        "workload": workload,
        "concurrency": concurrency,
        "entries_per_op": w.entries,
        "motia": motia,
        "raw": raw,
        "raw_name": backend.raw.name,
        "ratio": ratio,
        # Robust to stalls from other processes on a shared machine: raw p50 / motia-state p50.
        "p50_ratio": raw["p50_us"] / motia["p50_us"] if motia["p50_us"] else float("nan"),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    adapters = _names(args.adapters, ADAPTERS, "adapter")
    workloads = _names(args.workloads, WORKLOADS, "workload")
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "settings": {
            "adapters": adapters,
            "workloads": workloads,
            "concurrency": concurrencies,
            "runs": args.runs,
            "seconds_per_run": args.seconds,
            "slices": args.slices,
            "scale": args.scale,
            "scale_rows": args.scale_rows,
        },
        "machine": await machine_info(),
        "rows": [],
        "errors": [],
        "scale": {},
    }
    for name in adapters:
        try:
            backend = await make_backend(name)
            await backend.open()
        except Exception as exc:  # an adapter not written yet, or a server down: say so, go on
            msg = f"{name}: cannot open ({type(exc).__name__}: {exc})"
            print(msg, file=sys.stderr)
            results["errors"].append(msg)
            continue
        try:
            for workload in workloads:
                for c in concurrencies:
                    try:
                        # A bound on the whole row: an adapter that hangs is reported, not waited for forever.
                        limit = 60 + 10 * args.runs * args.seconds
                        row = await asyncio.wait_for(
                            _row(backend, workload, c, args.runs, args.seconds, args.slices), limit
                        )
                    except Exception as exc:
                        msg = f"{name} {workload} c={c}: {type(exc).__name__}: {exc}"
                        print(msg, file=sys.stderr)
                        traceback.print_exc(limit=3)
                        results["errors"].append(msg)
                        continue
                    results["rows"].append(row)
                    print(format_rows([row], header=not any(results["rows"][:-1])), flush=True)
            await backend.raw.reset()
        finally:
            await backend.close()
    if args.scale:
        from bench.scale import run_scale

        for name in adapters:
            if name == "postgres-pgbouncer":
                continue  # the scale of the table is the postgres row's; the pooler adds nothing to it
            try:
                results["scale"][name] = await run_scale(name, args.scale_rows, quick=args.quick)
            except Exception as exc:
                msg = f"{name} scale: {type(exc).__name__}: {exc}"
                print(msg, file=sys.stderr)
                traceback.print_exc(limit=3)
                results["errors"].append(msg)
                continue
            print(format_scale({name: results["scale"][name]}), flush=True)
    results["targets"] = evaluate_targets(results["rows"], results["scale"])
    results["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


BEGIN_MARK = "<!-- bench:results:begin -->"
END_MARK = "<!-- bench:results:end -->"


def _update_doc(path: Path, tables: str) -> None:
    """Replace what lies between the results markers of ``path`` with ``tables``."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {BEGIN_MARK} ... {END_MARK} section to update")
    text = text[: start + len(BEGIN_MARK)] + "\n" + tables + text[end:]
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    t0 = time.monotonic()
    results = asyncio.run(_run(args))
    print()
    print(format_rows(results["rows"]))
    if results["scale"]:
        print()
        print(format_scale(results["scale"]))
    print()
    print(format_targets(results["targets"]))
    args.out.mkdir(parents=True, exist_ok=True)
    out_json = args.out / "latest.json"
    out_json.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    out_md = args.out / "latest.md"
    out_md.write_text(to_markdown(results), encoding="utf-8")
    print(f"\nresults: {out_json} (and {out_md.name}, the tables in Markdown)")
    if args.update_doc is not None:
        _update_doc(args.update_doc, out_md.read_text(encoding="utf-8"))
        print(f"updated: {args.update_doc}")
    if not args.no_chart and results["rows"]:
        chart = write_chart(results["rows"], args.out / "ratios.png")
        print(f"chart:   {chart}")
    print(f"took {time.monotonic() - t0:.0f} s; errors: {len(results['errors'])}")
    for e in results["errors"]:
        print("  " + e)
    return 1 if results["errors"] else 0
