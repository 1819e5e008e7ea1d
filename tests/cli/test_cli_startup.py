"""What a reading call starts up with (SPEC §9: under 0.15 s, no Alembic import): structural checks, no timing.

A plain reading call (``get``, ``ttl``, ``keys``, ``list``) runs without click (``cli/fast.py``); any other form
goes through click. Both must print the same, byte for byte, with the same exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.cli import fast, startup
from tests.cli.conftest import run_cli, url_of
from tests.conftest import FACTORIES, MARKS

# Run like the console script (`sys.argv[1:]` are the CLI's arguments), then report on stderr what is loaded.
PROBE = """
import json, sys
from motia_state.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = sorted(name for name, module in sys.modules.items() if module is not None)
from motia_state import telemetry
print("PROBE " + json.dumps({"code": code, "loaded": loaded, "api": telemetry.API}), file=sys.stderr)
"""
# Nothing a reading call needs: the migration machinery, the web server, click (the fast path), telemetry
# without a provider, the trigger engine, config.yml's parser (there is no config.yml here).
NOT_LOADED = ("alembic", "sqlalchemy", "starlette", "uvicorn", "click", "opentelemetry", "yaml", "motia_state.triggers")
SQL = [pytest.param(name, marks=MARKS.get(name, [])) for name in ("sqlite", "postgres")]


def _probe(*args: str, cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("MOTIA_STATE_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
        check=False,
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("PROBE ")]
    assert line, done.stderr
    report: dict[str, Any] = json.loads(line[-1].removeprefix("PROBE "))
    report["out"] = done.stdout
    return report


def _heavy(report: dict[str, Any]) -> list[str]:
    return [m for m in report["loaded"] if any(m == n or m.startswith(n + ".") for n in NOT_LOADED)]


@pytest.fixture(params=SQL)
async def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An up-to-date SQL store holding a few entries, and its URL."""
    backend = str(request.param)
    state: StateManager = await FACTORIES[backend](tmp_path)
    await state.set("s", "k", {"name": "Zoë", "n": [1, 2.5, None], "nested": {"t": True}})
    await state.set("s", "null", None)
    await state.set("s", "forever", "x")
    await state.set("t", "k2", 2**70)
    await state.close()
    return url_of(backend, tmp_path)


@pytest.mark.parametrize("call", [("get", "s", "k"), ("ttl", "s", "k"), ("keys", "s"), ("list", "s"), ("list",)])
async def test_a_reading_call_loads_only_what_it_needs(seeded: str, tmp_path: Path, call: tuple[str, ...]) -> None:
    report = _probe("--url", seeded, *call, cwd=tmp_path)
    assert report["code"] == 0 and report["out"]
    assert _heavy(report) == []
    assert report["api"] is False


async def test_a_call_click_reads_still_skips_alembic_and_the_server(seeded: str, tmp_path: Path) -> None:
    report = _probe("--url", seeded, "get", "--", "s", "k", cwd=tmp_path)  # `--`: left to click
    assert report["code"] == 0
    assert "click" in report["loaded"]
    assert [m for m in _heavy(report) if m != "click" and not m.startswith("click.")] == []


async def test_a_missing_entry_loads_only_what_prints_the_error(seeded: str, tmp_path: Path) -> None:
    missing = _probe("--url", seeded, "get", "s", "nope", cwd=tmp_path)
    assert missing["code"] == 1 and missing["out"] == ""
    assert [m for m in _heavy(missing) if not m.startswith("click")] == []  # click prints the error line


def test_telemetry_loads_when_the_environment_names_a_provider(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    report = _probe(
        "--url", url, "keys", "s", cwd=tmp_path, env={"OTEL_PYTHON_TRACER_PROVIDER": "default_tracer_provider"}
    )
    assert report["code"] == 0
    assert "opentelemetry" in report["loaded"] and report["api"] is True


def test_only_one_operation_commands_start_without_telemetry() -> None:
    assert startup.command_of(["--url", "memory://", "get", "s", "k"]) == "get"
    assert startup.command_of(["--url=memory://", "--config", "c.yml", "worker", "app:state"]) == "worker"
    assert startup.command_of(["--help"]) is None
    assert startup.command_of([]) is None
    # The commands that import the user's code or serve for long keep whatever telemetry the process has.
    for command in ("worker", "ui", "watch", "triggers", "migrate", "copy", "export", "import", "demo"):
        assert command not in startup.ONE_OPERATION


def test_what_the_fast_path_takes_and_what_it_leaves_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    u = ("--url", "sqlite:///x.db")
    assert fast.parse([*u, "get", "s", "k"]) == fast.Call("sqlite:///x.db", "get", ("s", "k"))
    assert fast.parse(["--url=memory://", "list", "--jsonl", "--compact"]) == fast.Call(
        "memory://", "list", (), jsonl=True, compact=True
    )
    assert fast.parse(["keys", "--compact", "s"]) == fast.Call(None, "keys", ("s",), compact=True)
    assert fast.parse(["ttl", "s", "k", "--jsonl"]) == fast.Call(None, "ttl", ("s", "k"), jsonl=True)
    for args in (
        [],
        ["--help"],
        [*u, "get", "--help"],
        [*u, "get", "-h"],
        [*u, "get", "s"],  # click says what is missing
        [*u, "get", "s", "k", "extra"],
        [*u, "keys"],
        [*u, "list", "a", "b"],
        [*u, "get", "--", "s", "k"],
        [*u, "get", "-", "k"],
        [*u, "get", "s", "k", "--jsonl=1"],
        [*u, "items", "s"],
        [*u, "groups"],
        [*u, "set", "s", "k", "1"],
        [*u, *u, "get", "s", "k"],  # repeated: click takes the last
        ["--url", "--x", "get", "s", "k"],
        ["--config", "c.yml", "get", "s", "k"],
        ["--version"],
        ["--url"],
    ):
        assert fast.parse(args) is None, args
    monkeypatch.setenv("_MOTIA_STATE_COMPLETE", "bash_complete")  # a shell asking click for completions
    assert fast.parse([*u, "get", "s", "k"]) is None


# Each call, as the fast path reads it and in a form only click reads (flags first, then `--`).
CALLS = [
    ("get", ("s", "k"), ()),
    ("get", ("s", "k"), ("--compact",)),
    ("get", ("s", "null"), ("--jsonl",)),
    ("get", ("t", "k2"), ()),
    ("get", ("s", "nope"), ()),
    ("get", ("no-such-scope", "k"), ("--compact",)),
    ("ttl", ("s", "forever"), ()),
    ("ttl", ("s", "nope"), ("--jsonl",)),
    ("keys", ("s",), ()),
    ("keys", ("s",), ("--jsonl",)),
    ("keys", ("empty",), ("--compact",)),
    ("list", ("s",), ()),
    ("list", ("s",), ("--compact",)),
    ("list", ("s",), ("--jsonl",)),
    ("list", ("empty",), ()),
    ("list", (), ()),
    ("list", (), ("--compact",)),
    ("list", (), ("--jsonl",)),
]


async def test_the_fast_path_prints_what_click_prints(seeded: str, tmp_path: Path) -> None:
    for command, arguments, flags in CALLS:
        plain = run_cli("--url", seeded, command, *arguments, *flags, cwd=tmp_path)
        clicked = run_cli("--url", seeded, command, *flags, "--", *arguments, cwd=tmp_path)
        assert (plain.code, plain.out, plain.err) == (clicked.code, clicked.out, clicked.err), (command, arguments)
        assert plain.code in (0, 1)


def test_the_same_failure_either_way(tmp_path: Path) -> None:
    # A store that cannot be opened: the same one line and exit code from both paths.
    (tmp_path / "a-directory.db").mkdir()
    for url in (f"sqlite:///{tmp_path / 'a-directory.db'}", "postgresql://u:secret@127.0.0.1:1/db", "bogus://x"):
        plain = run_cli("--url", url, "get", "s", "k", cwd=tmp_path)
        clicked = run_cli("--url", url, "get", "--", "s", "k", cwd=tmp_path)
        assert (plain.code, plain.out, plain.err) == (clicked.code, clicked.out, clicked.err), url
        assert plain.code in (2, 3) and "secret" not in plain.err
        plain.failed_cleanly(plain.code)
