"""Tables, the targets of issues 6 and 18, and the PNG chart of the ratios."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = [
    "BASELINE_TARGETS",
    "PEER_MIN",
    "RAW_TARGETS_18",
    "TARGETS",
    "evaluate_targets",
    "format_rows",
    "format_scale",
    "format_skipped",
    "format_targets",
    "missed_rows",
    "write_chart",
]

# Issue 6: (adapter, workload, concurrency, minimum ratio motia-state / raw driver)
TARGETS: list[tuple[str, str, int, float]] = [
    ("postgres", "get", 1, 0.90),
    ("postgres", "set", 1, 0.90),
    ("postgres", "update", 1, 0.90),
    ("redis", "get", 1, 0.90),
    ("redis", "set", 1, 0.90),
    ("sqlite", "get", 1, 0.70),
    ("sqlite", "set", 1, 0.70),
    ("memory", "get", 1, 0.50),
    ("redis", "list100", 1, 0.80),
    ("redis", "clear100", 1, 0.80),
    ("postgres", "get", 16, 2.0),
    ("postgres", "set", 16, 2.0),
    ("sqlite", "get", 16, 1.3),
    ("sqlite", "set", 16, 1.3),
]
SET_MANY_SPEEDUP = 10.0
SCALE_MAX_RATIO = 2.0

# Issue 18, each at every concurrency of ISSUE_18_CONCURRENCY that the run measured.
ISSUE_18_CONCURRENCY = (1, 16)
#: motia-state / the best peer on every row that has a peer, on every adapter.
PEER_MIN = 1.0
#: (adapter, workload, minimum ratio motia-state / the simplest-statement baseline of bench.plain)
BASELINE_TARGETS: list[tuple[str, str, float]] = [
    ("sqlite", "set_many1000", 0.8),
    ("sqlite", "clear100", 0.8),
    ("redis", "update", 0.8),
]
#: (adapter, workload, minimum ratio motia-state / raw driver)
RAW_TARGETS_18: list[tuple[str, str, float]] = [
    ("memory", "set", 0.6),
    ("memory", "update", 0.6),
]


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


# Fixed minimum widths, so that rows printed one by one as they finish line up with the header.
_MIN_WIDTHS = [8, 12, 2, 9, 7, 7, 9, 7, 7, 5, 9, 12, 10, 7, 11, 8]
_LEFT = {0, 1, 2, 11}  # left-aligned columns (names); the numbers are right-aligned


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), _MIN_WIDTHS[i] if i < len(_MIN_WIDTHS) else 0, *(len(r[i]) for r in rows))
        for i, h in enumerate(head)
    ]

    def cells(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i in _LEFT else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    line = cells(head)
    out = [line, "-" * len(line)]
    out += [cells(r) for r in rows]
    return "\n".join(out)


ROW_HEAD = [
    "adapter",
    "workload",
    "c",
    "ops/s",
    "p50 us",
    "p99 us",
    "raw ops/s",
    "raw p50",
    "raw p99",
    "ratio",
    "p50 ratio",
    "best peer",
    "peer ops/s",
    "vs peer",
    "plain ops/s",
    "vs plain",
]


def _ratio(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}"


def format_rows(rows: list[dict[str, Any]], header: bool = True) -> str:
    """The main table: motia-state vs the raw driver, the best peer and the simplest-statement baseline, one
    line per adapter/workload/concurrency."""
    body = [
        [
            r["adapter"],
            r["workload"],
            str(r["concurrency"]),
            _num(r["motia"]["ops_per_s"]),
            _num(r["motia"]["p50_us"]),
            _num(r["motia"]["p99_us"]),
            _num(r["raw"]["ops_per_s"]),
            _num(r["raw"]["p50_us"]),
            _num(r["raw"]["p99_us"]),
            f"{r['ratio']:.2f}",
            f"{r.get('p50_ratio', float('nan')):.2f}",
            r.get("best_peer") or "-",
            _num(r["peers"][r["best_peer"]]["ops_per_s"]) if r.get("best_peer") else "-",
            _ratio(r.get("peer_ratio")),
            _num(r["baseline"]["ops_per_s"]) if r.get("baseline") else "-",
            _ratio(r.get("baseline_ratio")),
        ]
        for r in rows
    ]
    text = _table(ROW_HEAD, body)
    return text if header else "\n".join(text.splitlines()[2:])


def format_skipped(rows: list[dict[str, Any]]) -> str:
    """Which peer did not run which workload, and why (once per adapter, peer and workload)."""
    seen: dict[tuple[str, str, str], str] = {}
    for r in rows:
        for peer, reason in r.get("skipped", {}).items():
            seen.setdefault((r["adapter"], r["workload"], peer), reason)
    return "\n".join(f"  {a} {w}: {p} skipped: {why}" for (a, w, p), why in seen.items())


def format_scale(scale: dict[str, dict[str, Any]]) -> str:
    """Scale results: per adapter, empty vs full table, cleanup and list_groups."""
    lines: list[str] = []
    for name, s in scale.items():
        lines.append(f"{name}: {s['rows']:,} rows in {s['scopes']:,} other scopes (loaded in {s['load_s']:.1f} s)")
        for op, m in s["ops"].items():
            lines.append(
                f"  {op:<6} empty {m['empty_us']:>10.1f} us   full {m['full_us']:>10.1f} us   ratio {m['ratio']:.2f}"
            )
        c = s.get("cleanup")
        if c:
            lines.append(
                f"  cleanup: removed {c['removed']:,} of {c['expired']:,} expired among {c['live']:,} live"
                f" in {c['seconds']:.2f} s = {c['rows_per_s']:,.0f} rows/s; batches: {c['batches']}"
                f"; live rows left {c['live_after']:,}"
            )
        g = s.get("list_groups")
        if g:
            lines.append(f"  list_groups: {g['groups']:,} scopes in {g['seconds'] * 1000:.1f} ms")
    return "\n".join(lines)


def _find(rows: list[dict[str, Any]], adapter: str, workload: str, c: int) -> dict[str, Any] | None:
    for r in rows:
        if r["adapter"] == adapter and r["workload"] == workload and r["concurrency"] == c:
            return r
    return None


def _ratio_target(issue: int, row: dict[str, Any], text: str, value: float | None, minimum: float) -> dict[str, Any]:
    """One ratio target of one row; ``row`` names the row that a profile of a miss is taken on."""
    measured = value is not None and not math.isnan(value)
    return {
        "issue": issue,
        "target": text,
        "value": round(value, 3) if measured else None,
        "met": bool(value >= minimum) if measured and value is not None else None,
        "row": [row["adapter"], row["workload"], row["concurrency"]],
    }


def evaluate_issue18(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 18's row targets: >= the best peer everywhere, >= 0.8x the simplest statement on SQLite bulk
    writes / clear and Redis update, memory set / update >= 0.6x dict+json."""
    out: list[dict[str, Any]] = []
    wanted = {(a, w): m for a, w, m in BASELINE_TARGETS}
    raw_wanted = {(a, w): m for a, w, m in RAW_TARGETS_18}
    for r in rows:
        if r["concurrency"] not in ISSUE_18_CONCURRENCY:
            continue
        where = f"{r['adapter']} {r['workload']} c={r['concurrency']}"
        if r.get("best_peer"):
            text = f"{where}: >= {PEER_MIN}x the best peer ({r['best_peer']})"
            out.append(_ratio_target(18, r, text, r.get("peer_ratio"), PEER_MIN))
        minimum = wanted.get((r["adapter"], r["workload"]))
        if minimum is not None and r.get("baseline"):
            text = f"{where}: >= {minimum}x the simplest statement ({r['baseline']['name']})"
            out.append(_ratio_target(18, r, text, r.get("baseline_ratio"), minimum))
        minimum = raw_wanted.get((r["adapter"], r["workload"]))
        if minimum is not None:
            text = f"{where}: >= {minimum}x {r['raw_name']}"
            out.append(_ratio_target(18, r, text, r["ratio"], minimum))
    return out


def evaluate_targets(rows: list[dict[str, Any]], scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target of issues 18 and 6 that this run measured, with the value and met / missed."""
    return evaluate_issue18(rows) + evaluate_issue6(rows, scale)


def evaluate_issue6(rows: list[dict[str, Any]], scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target of issue 6 that this run measured."""
    out: list[dict[str, Any]] = []
    for adapter, workload, c, minimum in TARGETS:
        r = _find(rows, adapter, workload, c)
        if r is None:
            continue
        out.append(_ratio_target(6, r, f"{adapter} {workload} c={c}: ratio >= {minimum}", r["ratio"], minimum))
    for adapter in dict.fromkeys(r["adapter"] for r in rows):
        single = _find(rows, adapter, "set", 1)
        many = _find(rows, adapter, "set_many1000", 1)
        if single is None or many is None:
            continue
        speedup = many["motia"]["ops_per_s"] * 1000 / single["motia"]["ops_per_s"]
        out.append(
            {
                "issue": 6,
                "target": f"{adapter} set_many(1000) per entry >= {SET_MANY_SPEEDUP:.0f}x single set",
                "value": round(speedup, 1),
                "met": speedup >= SET_MANY_SPEEDUP,
            }
        )
    for adapter, s in scale.items():
        for op, m in s["ops"].items():
            out.append(
                {
                    "issue": 6,
                    "target": f"{adapter} scale {op}: full / empty table <= {SCALE_MAX_RATIO}",
                    "value": round(m["ratio"], 2),
                    "met": m["ratio"] <= SCALE_MAX_RATIO,
                }
            )
        cl = s.get("cleanup")
        sql = adapter in ("sqlite", "postgres")
        if cl:
            out.append(
                {
                    "issue": 6,
                    "target": f"{adapter} cleanup removes every expired row, none live"
                    + (", in bounded batches" if sql else ""),
                    "value": f"{cl['rows_per_s']:,.0f} rows/s; batches: {cl['batches']}",
                    # Batches are seen by polling every 20 ms: a small (--quick) table is cleaned too fast.
                    "met": cl["removed"] == cl["expired"]
                    and cl["live_after"] == cl["live"]
                    and (not sql or bool(cl["intermediate_counts"]) or cl["expired"] < 50_000),
                }
            )
    return out


def missed_rows(targets: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """The rows of the missed ratio targets, once each, in target order: the ones to profile."""
    rows: dict[tuple[str, str, int], None] = {}
    for t in targets:
        if t.get("met") is False and t.get("row"):
            adapter, workload, c = t["row"]
            rows[(adapter, workload, int(c))] = None
    return list(rows)


def _mark(met: bool | None) -> str:
    return "n/a   " if met is None else "met   " if met else "MISSED"


def format_targets(targets: list[dict[str, Any]]) -> str:
    """One line per target, grouped by issue: met / MISSED, the measured value, and the profile of a miss."""
    if not targets:
        return "targets: none measured"
    lines: list[str] = []
    for issue in sorted({t.get("issue", 6) for t in targets}, reverse=True):
        lines.append(f"targets (issue {issue}):")
        for t in targets:
            if t.get("issue", 6) != issue:
                continue
            lines.append(f"  {_mark(t['met'])}  {t['target']}  (measured {t['value']})")
            if t.get("profile"):
                lines.append(f"          profile: {t['profile']}")
                for frame in t.get("top_frames", []):
                    lines.append(f"            {frame}")
    return "\n".join(lines)


def write_chart(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar charts of the ratios, one row of panels per concurrency: motia-state / raw driver (the targets of
    issue 6 marked; diamonds: / the simplest statement), and motia-state / the best peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrencies = sorted({r["concurrency"] for r in rows})
    adapters = list(dict.fromkeys(r["adapter"] for r in rows))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(len(concurrencies), 2, figsize=(18, 4.2 * len(concurrencies)), squeeze=False)
    width = 0.8 / max(1, len(adapters))
    targets = {(a, w, c): m for a, w, c, m in TARGETS}
    baseline_min = {(a, w): m for a, w, m in BASELINE_TARGETS}
    for (ax, ax_peer), c in zip(axes, concurrencies, strict=True):
        for ai, adapter in enumerate(adapters):
            xs: list[float] = []
            ys: list[float] = []
            peer_xs: list[float] = []
            peer_ys: list[float] = []
            for wi, workload in enumerate(workloads):
                r = _find(rows, adapter, workload, c)
                if r is None:
                    continue
                x = wi + (ai - (len(adapters) - 1) / 2) * width
                xs.append(x)
                ys.append(r["ratio"])
                minimum = targets.get((adapter, workload, c))
                if minimum is not None:
                    ax.plot([x - width / 2, x + width / 2], [minimum, minimum], color="black", linewidth=2)
                ratio = r.get("baseline_ratio")
                if ratio is not None and not math.isnan(ratio):
                    ax.plot([x], [ratio], marker="D", color="black", markersize=5)
                    floor = baseline_min.get((adapter, workload))
                    if floor is not None:
                        ax.plot([x - width / 2, x + width / 2], [floor, floor], color="red", linewidth=2)
                ratio = r.get("peer_ratio")
                if ratio is not None and not math.isnan(ratio):
                    peer_xs.append(x)
                    peer_ys.append(ratio)
            ax.bar(xs, ys, width=width, label=adapter, color=f"C{ai}")
            ax_peer.bar(peer_xs, peer_ys, width=width, label=adapter, color=f"C{ai}")
        panels = (
            (ax, "black: issue 6 targets; diamonds: vs the simplest statement, red: its target", "/ raw driver"),
            (ax_peer, "target of issue 18: >= 1.0 on every row with a peer; log scale", "/ best peer"),
        )
        for a, title, label in panels:
            a.axhline(1.0, color="grey", linestyle="--", linewidth=1)
            a.set_xticks(range(len(workloads)), workloads)
            a.set_ylabel(f"motia-state {label} (ops/s)")
            a.set_title(f"concurrency {c} ({title})", fontsize=9)
            a.legend(loc="upper right")
        # Peers are 0.05x to 40x away: a log axis keeps the rows near parity readable.
        ax_peer.set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _peer_cell(r: dict[str, Any]) -> str:
    best = r.get("best_peer")
    if not best:
        return "- | - | -"
    return f"{best} | {_num(r['peers'][best]['ops_per_s'])} | **{_ratio(r.get('peer_ratio'))}**"


def _baseline_cell(r: dict[str, Any]) -> str:
    b = r.get("baseline")
    if not b:
        return "- | - | -"
    return f"{b['name']} | {_num(b['ops_per_s'])} | **{_ratio(r.get('baseline_ratio'))}**"


def to_markdown(results: dict[str, Any]) -> str:
    """Machine, command, the ops/s + ratio table (raw driver, best peer, simplest statement), every peer's
    numbers, scale results and targets, as Markdown (for BENCHMARKS.md)."""
    m = results["machine"]
    s = results["settings"]
    out = [
        f"Run started {results['started_utc']} (UTC), finished {results.get('finished_utc', '?')}.",
        "",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}; {m['platform']}",
        f"- Python {m['python']}; SQLite {m['sqlite']}; Postgres {m['postgres']}; Redis {m['redis']}",
        "- drivers: " + ", ".join(f"{k} {v}" for k, v in m["drivers"].items() if v),
        f"- command: `{results['command']}` ({s['runs']} runs per row, median; {s['seconds_per_run']} s per run)",
    ]
    peers = results.get("peers", {})
    if peers:
        out.append(
            "- peers: " + "; ".join(f"{a}: " + ", ".join(labels.values()) for a, labels in peers.items() if labels)
        )
    for note in results.get("notes", []):
        out.append(f"- {note}")
    out += [
        "",
        "| adapter | workload | c | ops/s | p50 µs | p99 µs | raw | raw ops/s | raw p50 µs | raw p99 µs | ratio"
        " | p50 ratio | best peer | peer ops/s | vs best peer | simplest | simplest ops/s | vs simplest |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- "
        "| ---: | ---: |",
    ]
    for r in results["rows"]:
        out.append(
            f"| {r['adapter']} | {r['workload']} | {r['concurrency']} | {_num(r['motia']['ops_per_s'])}"
            f" | {_num(r['motia']['p50_us'])} | {_num(r['motia']['p99_us'])} | {r['raw_name']}"
            f" | {_num(r['raw']['ops_per_s'])} | {_num(r['raw']['p50_us'])} | {_num(r['raw']['p99_us'])}"
            f" | **{r['ratio']:.2f}** | {r.get('p50_ratio', float('nan')):.2f}"
            f" | {_peer_cell(r)} | {_baseline_cell(r)} |"
        )
    peer_rows = [(r, name, v) for r in results["rows"] for name, v in r.get("peers", {}).items()]
    if peer_rows:
        out += [
            "",
            "| adapter | workload | c | peer | peer ops/s | peer p50 µs | peer p99 µs | motia-state / peer |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for r, name, v in peer_rows:
            ratio = r["motia"]["ops_per_s"] / v["ops_per_s"] if v["ops_per_s"] else float("nan")
            out.append(
                f"| {r['adapter']} | {r['workload']} | {r['concurrency']} | {name} | {_num(v['ops_per_s'])}"
                f" | {_num(v['p50_us'])} | {_num(v['p99_us'])} | {_ratio(ratio)} |"
            )
    skipped = format_skipped(results["rows"])
    if skipped:
        out += ["", "Not measured (the peer cannot do it):", ""]
        out += ["- " + line.strip() for line in skipped.splitlines()]
    if results["scale"]:
        out += [
            "",
            "| adapter | rows | op (100-entry scope) | empty table µs | full table µs | full / empty |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for name, sc in results["scale"].items():
            for op, v in sc["ops"].items():
                out.append(
                    f"| {name} | {sc['rows']:,} | {op} | {v['empty_us']:.1f} | {v['full_us']:.1f} | {v['ratio']:.2f} |"
                )
        out += [
            "",
            "| adapter | cleanup: expired / live rows | removed | seconds | rows/s | batches | list_groups |",
            "| --- | --- | ---: | ---: | ---: | --- | --- |",
        ]
        for name, sc in results["scale"].items():
            c = sc["cleanup"]
            g = sc["list_groups"]
            out.append(
                f"| {name} | {c['expired']:,} / {c['live']:,} | {c['removed']:,} | {c['seconds']:.2f}"
                f" | {c['rows_per_s']:,.0f} | {c['batches']} | {g['groups']:,} scopes in {g['seconds'] * 1000:.0f} ms |"
            )
    out += ["", "| issue | target | measured | | profile of the miss |", "| ---: | --- | --- | --- | --- |"]
    for t in results.get("targets", []):
        met = "n/a" if t["met"] is None else "met" if t["met"] else "**missed**"
        profile = ""
        if t.get("profile"):
            profile = f"`{Path(t['profile']).name}`: " + "; ".join(t.get("top_frames", [])[:3])
        out.append(f"| {t.get('issue', 6)} | {t['target']} | {t['value']} | {met} | {profile} |")
    return "\n".join(out) + "\n"
