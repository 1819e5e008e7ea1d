"""``python -m bench.targets``: one summary of every target that the benchmarks report, met or missed.

Reads each results JSON in ``bench/results/`` (or ``--dir``) that has a top-level ``"targets"`` list of
``{"target": str, "value": any, "met": bool | None, "profile": optional path}`` — ``latest.json`` from
``python -m bench``, and those of ``bench.feed``, ``bench.triggers``, ``bench.cli_call``, ``bench.hotkey`` and
the scale run — prints one table grouped by source and writes ``targets.md`` beside them. A source expected but
without its file is listed as "not run". The exit status is 0 either way: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["EXPECTED", "Source", "collect", "format_table", "main", "to_markdown"]

#: The results files every full ``make bench`` writes (file stem -> what writes it).
EXPECTED: Final = {
    "latest": "python -m bench",
    "feed": "python -m bench.feed",
    "triggers": "python -m bench.triggers",
    "cli-call": "python -m bench.cli_call",
    "hotkey": "python -m bench.hotkey",
    "scale": "python -m bench.scale",
}


@dataclass
class Source:
    """One results file and its targets; ``status`` says why there are none ("not run", ...)."""

    name: str
    path: Path
    targets: list[dict[str, Any]] = field(default_factory=list)
    status: str = ""
    when: str = ""


def _load(path: Path) -> Source:
    source = Source(path.stem, path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        source.status = f"unreadable ({type(exc).__name__}: {exc})"
        return source
    if not isinstance(data, dict) or not isinstance(data.get("targets"), list):
        source.status = "no targets in it"
        return source
    source.targets = [t for t in data["targets"] if isinstance(t, dict) and "target" in t]
    source.when = str(data.get("finished_utc") or data.get("started_utc") or "")
    if not source.targets:
        source.status = "no targets measured"
    return source


def collect(folder: Path) -> list[Source]:
    """The expected sources first (in ``EXPECTED`` order, "not run" when absent), then any other file with
    targets."""
    sources: list[Source] = []
    for stem in EXPECTED:
        path = folder / f"{stem}.json"
        sources.append(_load(path) if path.exists() else Source(stem, path, status="not run"))
    for path in sorted(folder.glob("*.json")):
        if path.stem not in EXPECTED:
            other = _load(path)
            if other.targets:  # other JSON files (telemetry.json, ui.json, ...) report no targets: leave them out
                sources.append(other)
    return sources


def _mark(met: Any) -> str:
    return "n/a" if met is None else "met" if met else "MISSED"


def _label(t: dict[str, Any]) -> str:
    return f"[issue {t['issue']}] {t['target']}" if "issue" in t else str(t["target"])


def _profile(t: dict[str, Any]) -> str:
    return str(t.get("profile") or "")


def format_table(sources: list[Source]) -> str:
    """Plain text: per source a heading, then one line per target."""
    lines: list[str] = []
    met = missed = other = 0
    for s in sources:
        head = f"{s.name} ({s.path.name}{', ' + s.when if s.when else ''})"
        lines.append(head + (f": {s.status}" if s.status else ""))
        for t in s.targets:
            mark = _mark(t.get("met"))
            met += mark == "met"
            missed += mark == "MISSED"
            other += mark == "n/a"
            line = f"  {mark:<6}  {_label(t)}  (measured {t.get('value')})"
            if _profile(t):
                line += f"  profile: {_profile(t)}"
            lines.append(line)
    not_run = sum(1 for s in sources if s.status == "not run")
    lines.append(f"total: {met} met, {missed} missed, {other} n/a; {not_run} source(s) not run")
    return "\n".join(lines)


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def to_markdown(sources: list[Source]) -> str:
    """The same as a Markdown table (``targets.md``)."""
    out = [
        "# Every target, met or missed",
        "",
        "Written by `python -m bench.targets` from the results JSON files beside it.",
        "",
        "| source | target | measured | | profile of the miss |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in sources:
        if s.status and not s.targets:
            out.append(f"| {s.name} | *{_cell(s.status)}* | | | |")
        for t in s.targets:
            mark = _mark(t.get("met"))
            shown = "**missed**" if mark == "MISSED" else mark
            profile = f"`{_cell(_profile(t))}`" if _profile(t) else ""
            out.append(f"| {s.name} | {_cell(_label(t))} | {_cell(t.get('value'))} | {shown} | {profile} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=Path(__file__).parent / "results", help="where the JSON files are")
    p.add_argument("--out", type=Path, default=None, help="the Markdown summary (default: DIR/targets.md)")
    args = p.parse_args(argv)
    sources = collect(args.dir)
    print(format_table(sources))
    out = args.out or args.dir / "targets.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_markdown(sources), encoding="utf-8")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
