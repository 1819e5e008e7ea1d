"""``python -m bench``: run the workloads on each adapter, its raw baseline, the simplest-statement baseline and
the peers; print, save JSON and a chart; evaluate the targets and profile each missed one."""

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
from bench.core import WORKLOADS, Measurement, measure_many, median_summary
from bench.machine import machine_info
from bench.report import (
    evaluate_targets,
    format_rows,
    format_scale,
    format_skipped,
    format_targets,
    missed_rows,
    to_markdown,
    write_chart,
)

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
        "--slices", type=int, default=4, help="each run rotates the row's subjects through this many slices (4)"
    )
    p.add_argument("--quick", action="store_true", help="short runs (0.3 s), 1 run, small scale test")
    p.add_argument("--scale", dest="scale", action="store_true", default=None, help="run the scale tests (default)")
    p.add_argument("--no-scale", dest="scale", action="store_false", help="skip the scale tests")
    p.add_argument("--scale-rows", type=int, default=None, help="rows in the scale table (default 1,000,000)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for latest.json and ratios.png")
    p.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    p.add_argument(
        "--peers",
        dest="peers",
        action="store_true",
        default=True,
        help="also measure the peers (LangGraph, py-key-value-aio) where their packages import (default)",
    )
    p.add_argument("--no-peers", dest="peers", action="store_false", help="motia-state and the baselines only")
    p.add_argument(
        "--profile-misses",
        dest="profile_misses",
        action="store_true",
        default=None,
        help="profile motia-state (pyinstrument) on the row of every missed ratio target (default; not with --quick)",
    )
    p.add_argument("--no-profile-misses", dest="profile_misses", action="store_false")
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
    if args.profile_misses is None:
        args.profile_misses = not args.quick
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
    subjects, skipped = backend.subjects(workload)
    n = len(subjects)
    by_subject: list[list[Measurement]] = [[] for _ in subjects]
    for run in range(runs):
        # motia-state, raw and plain share one store (same layout), which the raw subject empties; each peer
        # empties its own. Prepared once per run; the timing rotates through the subjects in slices, and
        # which goes first rotates by run, so drift hits them all alike.
        for s in subjects:
            await s.reset()
        first = run % n
        order = subjects[first:] + subjects[:first]
        for j, m in enumerate(await measure_many(order, w, concurrency, seconds, slices)):
            by_subject[(first + j) % n].append(m)
    summaries = [median_summary(ms) for ms in by_subject]
    motia, raw = summaries[0], summaries[1]

    def vs(other: dict[str, Any] | None) -> float | None:
        if other is None:
            return None
        return motia["ops_per_s"] / other["ops_per_s"] if other["ops_per_s"] else float("nan")

    peers = {s.name: m for s, m in zip(subjects, summaries, strict=True) if s.kind == "peer"}
    best = max(peers, key=lambda name: peers[name]["ops_per_s"]) if peers else None
    plain = next(((s, m) for s, m in zip(subjects, summaries, strict=True) if s.kind == "plain"), None)
    return {
        "adapter": backend.name,
        "workload": workload,
        "concurrency": concurrency,
        "entries_per_op": w.entries,
        "motia": motia,
        "raw": raw,
        "raw_name": backend.raw.name,
        "ratio": vs(raw),
        # Robust to stalls from other processes on a shared machine: raw p50 / motia-state p50.
        "p50_ratio": raw["p50_us"] / motia["p50_us"] if motia["p50_us"] else float("nan"),
        "peers": peers,
        "skipped": skipped,
        "best_peer": best,
        "peer_ratio": vs(peers[best]) if best else None,
        "baseline": {"name": plain[0].name, **plain[1]} if plain else None,
        "baseline_ratio": vs(plain[1]) if plain else None,
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
            "peers": args.peers,
            "profile_misses": args.profile_misses,
        },
        "machine": await machine_info(),
        "rows": [],
        "errors": [],
        "scale": {},
        # adapter -> {peer name: what it is (class, package, version)}
        "peers": {},
        # Peers not measured (package missing, cannot open): reported, not errors.
        "notes": [],
    }
    for name in adapters:
        try:
            backend = await make_backend(name, peers=args.peers)
            await backend.open()
        except Exception as exc:  # an adapter not written yet, or a server down: say so, go on
            msg = f"{name}: cannot open ({type(exc).__name__}: {exc})"
            print(msg, file=sys.stderr)
            results["errors"].append(msg)
            continue
        for note in backend.notes:
            print(note, file=sys.stderr)
        results["notes"] += backend.notes
        if backend.peers:
            results["peers"][name] = {p.name: p.label for p in backend.peers}
        try:
            for workload in workloads:
                for c in concurrencies:
                    try:
                        # A bound on the whole row: an adapter that hangs is reported, not waited for forever.
                        n = len(backend.subjects(workload)[0])
                        limit = 120 + 10 * n * args.runs * args.seconds
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
            # Leave nothing behind: the shared store (raw) and each peer's own.
            for subject in [backend.raw, *backend.peers]:
                try:
                    await subject.reset()
                except Exception as exc:
                    msg = f"{name}: cannot empty {subject.name}'s store ({type(exc).__name__}: {exc})"
                    print(msg, file=sys.stderr)
                    results["errors"].append(msg)
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
    if args.profile_misses:
        await _profile_misses(results, args.out, seconds=max(1.0, 2 * args.seconds))
    results["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    return results


async def _profile_misses(results: dict[str, Any], out: Path, seconds: float) -> None:
    """Profile motia-state on the row of each missed ratio target; name the file and the top frames in it."""
    from bench.profile import profile_row

    profiles: dict[tuple[str, str, int], tuple[str, list[str]]] = {}
    for adapter, workload, c in missed_rows(results["targets"]):
        print(f"profiling the miss: {adapter} {workload} c={c} ...", flush=True)
        try:
            path, top = await profile_row(adapter, workload, c, seconds, out)
        except Exception as exc:
            msg = f"profile {adapter} {workload} c={c}: {type(exc).__name__}: {exc}"
            print(msg, file=sys.stderr)
            results["errors"].append(msg)
            continue
        profiles[(adapter, workload, c)] = (str(path), top)
    for t in results["targets"]:
        if t.get("met") is False and t.get("row"):
            found = profiles.get((t["row"][0], t["row"][1], int(t["row"][2])))
            if found:
                t["profile"], t["top_frames"] = found[0], found[1]


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
    skipped = format_skipped(results["rows"])
    if skipped:
        print("not measured (the peer cannot do it):\n" + skipped)
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
