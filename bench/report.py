"""Tables, the targets of issue 6, and the PNG chart of the ratios."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "evaluate_targets", "format_rows", "format_scale", "format_targets", "write_chart"]

# (adapter, workload, concurrency, minimum ratio motia-state / raw driver)
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


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


# Fixed minimum widths, so that rows printed one by one as they finish line up with the header.
_MIN_WIDTHS = [8, 12, 2, 9, 7, 7, 9, 7, 7, 5, 9]


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), _MIN_WIDTHS[i] if i < len(_MIN_WIDTHS) else 0, *(len(r[i]) for r in rows))
        for i, h in enumerate(head)
    ]
    line = "  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append(
            "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
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
]


def format_rows(rows: list[dict[str, Any]], header: bool = True) -> str:
    """The main table: motia-state vs the raw driver, one line per adapter/workload/concurrency."""
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
        ]
        for r in rows
    ]
    text = _table(ROW_HEAD, body)
    return text if header else "\n".join(text.splitlines()[2:])


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


def evaluate_targets(rows: list[dict[str, Any]], scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target of issue 6 that this run measured, with the value and met / missed."""
    out: list[dict[str, Any]] = []
    for adapter, workload, c, minimum in TARGETS:
        r = _find(rows, adapter, workload, c)
        if r is None:
            continue
        out.append(
            {
                "target": f"{adapter} {workload} c={c}: ratio >= {minimum}",
                "value": round(r["ratio"], 3),
                "met": r["ratio"] >= minimum,
            }
        )
    for adapter in dict.fromkeys(r["adapter"] for r in rows):
        single = _find(rows, adapter, "set", 1)
        many = _find(rows, adapter, "set_many1000", 1)
        if single is None or many is None:
            continue
        speedup = many["motia"]["ops_per_s"] * 1000 / single["motia"]["ops_per_s"]
        out.append(
            {
                "target": f"{adapter} set_many(1000) per entry >= {SET_MANY_SPEEDUP:.0f}x single set",
                "value": round(speedup, 1),
                "met": speedup >= SET_MANY_SPEEDUP,
            }
        )
    for adapter, s in scale.items():
        for op, m in s["ops"].items():
            out.append(
                {
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


def format_targets(targets: list[dict[str, Any]]) -> str:
    """One line per target: met / MISSED and the measured value."""
    if not targets:
        return "targets: none measured"
    lines = ["targets (issue 6):"]
    for t in targets:
        lines.append(f"  {'met   ' if t['met'] else 'MISSED'}  {t['target']}  (measured {t['value']})")
    return "\n".join(lines)


def write_chart(rows: list[dict[str, Any]], path: Path) -> Path:
    """Bar chart of the ratios, one panel per concurrency, with the targets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    concurrencies = sorted({r["concurrency"] for r in rows})
    adapters = list(dict.fromkeys(r["adapter"] for r in rows))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(len(concurrencies), 1, figsize=(12, 4.2 * len(concurrencies)), squeeze=False)
    width = 0.8 / max(1, len(adapters))
    targets = {(a, w, c): m for a, w, c, m in TARGETS}
    for ax, c in zip(axes[:, 0], concurrencies, strict=True):
        for ai, adapter in enumerate(adapters):
            xs: list[float] = []
            ys: list[float] = []
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
            ax.bar(xs, ys, width=width, label=adapter)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(workloads)), workloads)
        ax.set_ylabel("motia-state / raw driver (ops/s)")
        ax.set_title(f"concurrency {c} (black marks: issue 6 targets; dashed: parity)")
        ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def to_markdown(results: dict[str, Any]) -> str:
    """Machine, command, the ops/s + ratio table, scale results and targets, as Markdown (for BENCHMARKS.md)."""
    m = results["machine"]
    s = results["settings"]
    out = [
        f"Run started {results['started_utc']} (UTC), finished {results.get('finished_utc', '?')}.",
        "",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}; {m['platform']}",
        f"- Python {m['python']}; SQLite {m['sqlite']}; Postgres {m['postgres']}; Redis {m['redis']}",
        "- drivers: " + ", ".join(f"{k} {v}" for k, v in m["drivers"].items() if v),
        f"- command: `{results['command']}` ({s['runs']} runs per row, median; {s['seconds_per_run']} s per run)",
        "",
        "| adapter | workload | c | ops/s | p50 µs | p99 µs | raw | raw ops/s | raw p50 µs | raw p99 µs | ratio"
        " | p50 ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["rows"]:
        out.append(
            f"| {r['adapter']} | {r['workload']} | {r['concurrency']} | {_num(r['motia']['ops_per_s'])}"
            f" | {_num(r['motia']['p50_us'])} | {_num(r['motia']['p99_us'])} | {r['raw_name']}"
            f" | {_num(r['raw']['ops_per_s'])} | {_num(r['raw']['p50_us'])} | {_num(r['raw']['p99_us'])}"
            f" | **{r['ratio']:.2f}** | {r.get('p50_ratio', float('nan')):.2f} |"
        )
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
    out += ["", "| target (issue 6) | measured | |", "| --- | --- | --- |"]
    for t in results.get("targets", []):
        out.append(f"| {t['target']} | {t['value']} | {'met' if t['met'] else '**missed**'} |")
    return "\n".join(out) + "\n"
