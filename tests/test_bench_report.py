"""The benchmark harness's logic, on made-up numbers: target evaluation, the row's subjects and ratios, the
slice rotation, the targets summary. Nothing here is timed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import cli, core, report, targets
from bench.core import Measurement, Workload


def _summary(ops: float) -> dict[str, Any]:
    return {"ops_per_s": ops, "p50_us": 10.0, "p99_us": 20.0, "runs_ops_per_s": [ops], "ops": [int(ops)]}


def _row(
    adapter: str,
    workload: str,
    c: int,
    motia: float,
    raw: float,
    peers: dict[str, float] | None = None,
    baseline: float | None = None,
) -> dict[str, Any]:
    peers = peers or {}
    best = max(peers, key=lambda n: peers[n]) if peers else None
    return {
        "adapter": adapter,
        "workload": workload,
        "concurrency": c,
        "motia": _summary(motia),
        "raw": _summary(raw),
        "raw_name": "raw-driver",
        "ratio": motia / raw,
        "p50_ratio": 1.0,
        "peers": {n: _summary(v) for n, v in peers.items()},
        "skipped": {},
        "best_peer": best,
        "peer_ratio": motia / peers[best] if best else None,
        "baseline": {"name": "plain", **_summary(baseline)} if baseline else None,
        "baseline_ratio": motia / baseline if baseline else None,
    }


def _by_text(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in found}


def test_issue18_peer_baseline_and_memory_targets() -> None:
    rows = [
        _row("postgres", "set", 16, 900, 500, {"langgraph": 1000, "py-key-value": 300}),
        _row("postgres", "get", 1, 2000, 1900, {"langgraph": 500}),
        _row("sqlite", "set_many1000", 1, 90, 100, {"langgraph": 80}, baseline=100),
        _row("sqlite", "clear100", 1, 70, 100, {"langgraph": 10}, baseline=100),
        _row("redis", "update", 16, 900, 800, baseline=1000),
        _row("memory", "set", 1, 59, 100),
        _row("memory", "update", 1, 61, 100),
        _row("postgres", "set", 4, 1, 1000, {"langgraph": 1000}),  # not a concurrency issue 18 names
    ]
    found = _by_text(report.evaluate_issue18(rows))
    peer = found["postgres set c=16: >= 1.0x the best peer (langgraph)"]
    assert peer["met"] is False and peer["value"] == 0.9 and peer["row"] == ["postgres", "set", 16]
    assert found["postgres get c=1: >= 1.0x the best peer (langgraph)"]["met"] is True
    assert found["sqlite set_many1000 c=1: >= 0.8x the simplest statement (plain)"]["met"] is True
    assert found["sqlite clear100 c=1: >= 0.8x the simplest statement (plain)"]["met"] is False
    assert found["redis update c=16: >= 0.8x the simplest statement (plain)"]["met"] is True
    assert found["memory set c=1: >= 0.6x raw-driver"]["met"] is False
    assert found["memory update c=1: >= 0.6x raw-driver"]["met"] is True
    assert not any("c=4" in text for text in found)
    assert {t["issue"] for t in found.values()} == {18}
    # A row no peer can do (redis update) has no peer target; a memory set row has no baseline target.
    assert not any(text.startswith("redis update") and "peer" in text for text in found)


def test_unmeasurable_ratio_is_neither_met_nor_missed() -> None:
    row = _row("sqlite", "get", 1, 100, 100, {"langgraph": 0.0001})
    row["peer_ratio"] = float("nan")
    (t,) = report.evaluate_issue18([row])
    assert t["met"] is None and t["value"] is None


def test_issue6_targets_are_kept_and_labelled() -> None:
    rows = [_row("postgres", "get", 1, 95, 100), _row("postgres", "set", 1, 80, 100)]
    rows.append(_row("postgres", "set_many1000", 1, 10, 10))
    both = report.evaluate_targets(rows, {})
    six = [t for t in both if t["issue"] == 6]
    assert {t["target"]: t["met"] for t in six if "ratio" in t["target"]} == {
        "postgres get c=1: ratio >= 0.9": True,
        "postgres set c=1: ratio >= 0.9": False,
    }
    speedup = next(t for t in six if "set_many(1000)" in t["target"])
    assert speedup["value"] == 125.0 and speedup["met"] is True and "row" not in speedup


def test_missed_rows_once_each_in_order() -> None:
    found = [
        {"target": "a", "met": False, "row": ["sqlite", "clear100", 1]},
        {"target": "b", "met": True, "row": ["sqlite", "get", 1]},
        {"target": "c", "met": False, "row": ["sqlite", "clear100", 1]},
        {"target": "d", "met": None, "row": ["sqlite", "set", 1]},
        {"target": "e", "met": False},
        {"target": "f", "met": False, "row": ["redis", "update", 16]},
    ]
    assert report.missed_rows(found) == [("sqlite", "clear100", 1), ("redis", "update", 16)]


def test_format_targets_groups_by_issue_and_shows_the_profile() -> None:
    text = report.format_targets(
        [
            {"issue": 6, "target": "old one", "value": 1.0, "met": True},
            {
                "issue": 18,
                "target": "new one",
                "value": 0.5,
                "met": False,
                "profile": "/x/profile-sqlite-clear100-c1.txt",
                "top_frames": ["40.0% execute (a.py:1)"],
            },
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "targets (issue 18):" and "MISSED  new one" in lines[1]
    assert "profile-sqlite-clear100-c1.txt" in lines[2] and "40.0% execute" in lines[3]
    assert lines[4] == "targets (issue 6):" and "met" in lines[5]


class _Fake:
    def __init__(self, name: str, kind: str, skips: dict[str, str] | None = None) -> None:
        self.name, self.kind, self.skips = name, kind, skips or {}
        self.workloads = frozenset({"set"})
        self.resets = 0

    async def reset(self) -> None:
        self.resets += 1


class _Backend:
    name = "sqlite"

    def __init__(self, subjects: list[_Fake], skipped: dict[str, str]) -> None:
        self._subjects, self._skipped = subjects, skipped
        self.raw = subjects[1]

    def subjects(self, workload: str) -> tuple[list[_Fake], dict[str, str]]:
        return list(self._subjects), dict(self._skipped)


async def test_row_maps_each_measurement_back_to_its_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    rates = {"motia": 100.0, "raw": 50.0, "plain": 200.0, "langgraph": 80.0, "py-key-value": 125.0}
    orders: list[list[str]] = []

    async def fake_measure_many(subjects: list[_Fake], *args: Any) -> list[Measurement]:
        orders.append([s.name for s in subjects])
        return [Measurement(int(rates[s.name]), 1.0, [1.0]) for s in subjects]

    monkeypatch.setattr(cli, "measure_many", fake_measure_many)
    subjects = [
        _Fake("motia", "motia"),
        _Fake("raw", "raw"),
        _Fake("plain", "plain"),
        _Fake("langgraph", "peer"),
        _Fake("py-key-value", "peer"),
    ]
    row = await cli._row(_Backend(subjects, {"other": "cannot"}), "set", 16, 3, 0.01, 2)  # type: ignore[arg-type]
    # Which subject goes first rotates by run.
    assert [o[0] for o in orders] == ["motia", "raw", "plain"]
    assert all(s.resets == 3 for s in subjects)
    assert row["motia"]["ops_per_s"] == 100 and row["raw"]["ops_per_s"] == 50 and row["ratio"] == 2.0
    assert row["best_peer"] == "py-key-value" and row["peer_ratio"] == 0.8
    assert set(row["peers"]) == {"langgraph", "py-key-value"} and row["skipped"] == {"other": "cannot"}
    assert row["baseline"]["name"] == "plain" and row["baseline_ratio"] == 0.5


async def test_row_without_peers_or_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    async def fake_measure_many(subjects: list[_Fake], *args: Any) -> list[Measurement]:
        return [Measurement(10, 1.0, [1.0]) for _ in subjects]

    monkeypatch.setattr(cli, "measure_many", fake_measure_many)
    row = await cli._row(_Backend([_Fake("motia", "motia"), _Fake("raw", "raw")], {}), "set", 1, 1, 0.01, 1)  # type: ignore[arg-type]
    assert row["best_peer"] is None and row["peer_ratio"] is None
    assert row["baseline"] is None and row["baseline_ratio"] is None
    assert "-" in report.format_rows([row]).splitlines()[-1]


async def test_measure_many_rotates_the_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def fake_run(subject: Any, w: Workload, concurrency: int, duration: float) -> Measurement:
        calls.append(subject)
        return Measurement(1, 1.0, [float(len(calls))])

    async def prepare(subject: Any, concurrency: int) -> None:
        calls.append(f"prep-{subject}")

    monkeypatch.setattr(core, "_continuous", fake_run)
    w = Workload("fake", op=fake_run, prepare=prepare)  # type: ignore[arg-type]
    got = await core.measure_many(["a", "b", "c"], w, 1, 0.4, 4)  # type: ignore[list-item]
    assert calls[:6] == ["prep-a", "prep-b", "prep-c", "a", "b", "c"]  # prepared, then warmed
    assert calls[6:] == list("abcbcacababc")
    assert [m.ops for m in got] == [4, 4, 4]


def _write(folder: Path, name: str, data: Any) -> None:
    (folder / name).write_text(json.dumps(data), encoding="utf-8")


def test_targets_summary_reads_every_source(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "latest.json",
        {
            "finished_utc": "2026-12-02T10:00:00+00:00",
            "targets": [
                {"issue": 18, "target": "a | b", "value": 0.5, "met": False, "profile": "p.txt"},
                {"target": "plain one", "value": 1, "met": True},
            ],
        },
    )
    _write(tmp_path, "feed.json", {"overhead": []})  # written before it reported targets
    _write(tmp_path, "scale-10m.json", {"targets": [{"target": "big", "value": "x", "met": None}]})
    _write(tmp_path, "telemetry.json", {"rounds": 3})
    (tmp_path / "cli-call.json").write_text("{not json", encoding="utf-8")
    sources = targets.collect(tmp_path)
    by = {s.name: s for s in sources}
    assert [s.name for s in sources][: len(targets.EXPECTED)] == list(targets.EXPECTED)
    assert by["triggers"].status == "not run" and by["hotkey"].status == "not run"
    assert by["feed"].status == "no targets in it"
    assert by["cli-call"].status.startswith("unreadable")
    assert "telemetry" not in by and len(by["scale-10m"].targets) == 1
    text = targets.format_table(sources)
    assert "MISSED  [issue 18] a | b  (measured 0.5)  profile: p.txt" in text
    assert text.splitlines()[-1] == "total: 1 met, 1 missed, 1 n/a; 3 source(s) not run"
    md = targets.to_markdown(sources)
    assert "| latest | [issue 18] a \\| b | 0.5 | **missed** | `p.txt` |" in md
    assert "| triggers | *not run* | | | |" in md


def test_targets_main_writes_the_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "latest.json", {"targets": [{"target": "t", "value": 1, "met": True}]})
    assert targets.main(["--dir", str(tmp_path)]) == 0
    assert "met" in capsys.readouterr().out
    assert "| latest | t | 1 | met |  |" in (tmp_path / "targets.md").read_text(encoding="utf-8")


def test_skipped_peers_listed_once() -> None:
    rows = [_row("postgres", "update", c, 1, 1) for c in (1, 16)]
    for r in rows:
        r["skipped"] = {"langgraph": "no atomic read-modify-write"}
    assert report.format_skipped(rows).splitlines() == [
        "  postgres update: langgraph skipped: no atomic read-modify-write"
    ]


async def test_a_peer_whose_package_is_missing_is_a_note(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bench.peers import make_peers

    monkeypatch.setitem(sys.modules, "key_value.aio.stores.memory", None)  # import fails
    peers, notes = await make_peers("memory", tmpdir=tmp_path, pool_size=0)
    assert peers == [] and len(notes) == 1 and "py-key-value-aio[memory] not installed" in notes[0]
    monkeypatch.setitem(sys.modules, "langgraph.store.sqlite.aio", None)
    peers, notes = await make_peers("sqlite", tmpdir=tmp_path, pool_size=0)
    assert peers == [] and "langgraph-checkpoint-sqlite" in notes[0]
    assert await make_peers("postgres-pgbouncer", tmpdir=tmp_path, pool_size=10) == ([], [])
