"""The console script without a persistent store: help, demo on memory://, argument and config errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

COMMANDS = [
    "list",
    "get",
    "set",
    "delete",
    "clear",
    "groups",
    "cleanup",
    "migrate",
    "export",
    "import",
    "copy",
    "demo",
]


def _spare_port() -> int:
    # A port nothing listens on: bind, read the number, close.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_group_help_lists_every_command(cli: Any) -> None:
    run = cli("--help").ok()
    assert "Usage: motia-state" in run.out
    for command in COMMANDS:
        assert f"\n  {command} " in run.out, command
    assert "--config PATH" in run.out and "--url URL" in run.out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(cli: Any, command: str) -> None:
    run = cli(command, "--help").ok()
    assert f"Usage: motia-state {command}" in run.out
    assert "Example" in run.out
    assert f"motia-state {command}" in run.out.split("Example", 1)[1]
    assert run.err == ""


def test_demo_on_memory_prints_steps_and_resulting_state(cli: Any) -> None:
    run = cli("--url", "memory://", "demo", "--scope", "trace-demo").ok()
    out = run.out
    for text in ("booking.customer", "booking.venue", "payment.status", "BookingState(", "expires in"):
        assert text in out, text
    block = out.split("resulting state of trace-demo:\n", 1)[1].split("\n\n", 1)[0]
    state = json.loads(block)["trace-demo"]
    assert set(state) == {"booking", "booking.customer", "booking.venue", "payment.status", "hold"}
    assert state["booking"]["status"] == "confirmed"
    assert state["booking"]["seats"] == 2
    assert state["payment.status"] == "paid"
    assert state["booking.customer"] == {"name": "Ada Lovelace", "email": "ada@example.com"}


def test_memory_store_via_environment_is_empty_in_each_process(cli: Any) -> None:
    env = {"MOTIA_STATE_URL": "memory://"}
    assert cli("set", "s", "k", "1", env=env).ok().json() == {"old_value": None, "new_value": 1}
    # memory:// keeps nothing between invocations
    assert cli("list", env=env).ok().json() == {}
    assert cli("groups", env=env).ok().out == ""
    run = cli("get", "s", "k", env=env)
    assert run.out == ""
    assert run.failed_cleanly() == "motia-state: error: no entry for scope 's' key 'k'"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("pending", "needs quotes"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ("[Infinity]", "Infinity is not valid JSON"),
        ("-Infinity", "Infinity is not valid JSON"),
        ("1e999", "too large"),
        ('{"a": 1', "not valid JSON"),
        ("", "not valid JSON"),
    ],
)
def test_set_rejects_bad_json_with_one_line(cli: Any, value: str, needle: str) -> None:
    run = cli("--url", "memory://", "set", "s", "k", value)
    line = run.failed_cleanly(2)
    assert needle in line
    assert run.out == ""


def test_set_reads_stdin_and_rejects_bad_ttl(cli: Any) -> None:
    run = cli("--url", "memory://", "set", "s", "k", "-", input='{"from": "stdin", "n": 18446744073709551617}\n')
    assert run.ok().json() == {"old_value": None, "new_value": {"from": "stdin", "n": 18446744073709551617}}
    assert "ttl" in cli("--url", "memory://", "set", "s", "k", "1", "--ttl", "0").failed_cleanly(2)
    assert "ttl" in cli("--url", "memory://", "set", "s", "k", "1", "--ttl", "nan").failed_cleanly(2)


def test_usage_errors_are_one_line_with_exit_2(cli: Any) -> None:
    line = cli("get", "only-scope").failed_cleanly(code=2)
    assert "Missing argument 'KEY'" in line and "motia-state get --help" in line
    assert "No such command" in cli("frobnicate").failed_cleanly(code=2)
    assert "cannot be combined" in cli("--url", "memory://", "migrate", "--check", "--sql").failed_cleanly(code=2)


def test_empty_scope_or_key_is_refused(cli: Any) -> None:
    assert "scope must be a non-empty str" in cli("--url", "memory://", "get", "", "k").failed_cleanly(2)


def test_config_errors(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("state:\n  adapter: mongodb\n")
    line = cli("list").failed_cleanly(2)
    assert "config.yml" in line and "mongodb" in line and "allowed" in line

    (tmp_path / "config.yml").write_text("state:\n  adapter: memory\n  colour: blue\n")
    assert "unknown key state.colour" in cli("groups").failed_cleanly(2)

    assert "config file not found" in cli("--config", "nope.yml", "groups").failed_cleanly(2)
    (tmp_path / "config.yml").unlink()
    assert "unknown URL scheme 'mysql'" in cli("--url", "mysql://u:pw@h/db", "groups").failed_cleanly(2)

    # --config names the file; MOTIA_STATE_URL overrides it, and --url overrides both.
    (tmp_path / "other.yml").write_text("state:\n  adapter: memory\n")
    assert cli("--config", "other.yml", "list").ok().json() == {}
    env = {"MOTIA_STATE_URL": "mysql://nowhere"}
    assert "MOTIA_STATE_URL" in cli("--config", "other.yml", "list", env=env).failed_cleanly(2)
    assert cli("--config", "other.yml", "--url", "memory://", "list", env=env).ok().json() == {}


@pytest.mark.parametrize("scheme", ["postgresql", "redis"])
def test_unreachable_backend_is_one_masked_line(cli: Any, scheme: str) -> None:
    port = _spare_port()
    url = f"{scheme}://admin:Sup3rS3cret@127.0.0.1:{port}/" + ("motia" if scheme == "postgresql" else "0")
    runs = [
        ("", ["--url", url, "list"]),
        ("", ["set", "s", "k", "1"]),  # the store from MOTIA_STATE_URL
        ("--from: ", ["copy", "--from", url, "--to", "memory://"]),
        ("--to: ", ["copy", "--from", "memory://", "--to", url]),
    ]
    for prefix, args in runs:
        run = cli(*args, env={"MOTIA_STATE_URL": url})
        line = run.failed_cleanly(3)
        assert "Sup3rS3cret" not in run.err + run.out
        assert line.startswith(f"motia-state: error: {prefix}"), line
        assert f"127.0.0.1:{port}" in line
        assert "***" in line


def test_file_adapter_config_warns_in_one_line_and_uses_sqlite(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("state:\n  adapter: file\n")
    run = cli("groups").ok()
    assert run.out == ""
    assert run.err.startswith("motia-state: warning: ") and len(run.err.splitlines()) == 1
    assert "motia-state import .motia/motia.state.json" in run.err
    assert (tmp_path / ".motia" / "motia.state.db").is_file()


def test_example_script_runs_the_same_demo(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "booking.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTIA_STATE_")}
    env["MOTIA_STATE_URL"] = "memory://"
    done = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "booking.customer" in done.stdout and '"payment.status": "paid"' in done.stdout


def test_demo_hint_names_a_command_that_runs_from_a_shell_without_the_venv(tmp_path: Path) -> None:
    """After `make demo` the script is only in .venv/bin: the hint must show a path that works."""
    import subprocess
    import sys

    script = Path(sys.executable).with_name("motia-state")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([str(script), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    hint = next(line for line in done.stdout.splitlines() if line.startswith("inspect it with:"))
    command, verb, scope = hint.removeprefix("inspect it with:").split()
    assert verb == "list" and Path(command).is_file(), hint
    listed = subprocess.run([command, "list", scope], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and scope in listed.stdout
