"""``motia-state ui`` as a user runs it: a real server process, its event stream, shutdown, read-only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia_state import StateManager
from tests.ui.conftest import Server, outside_write

CLI = [sys.executable, "-m", "motia_state.cli"]


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"

    async def fill() -> None:
        async with StateManager.from_url(url) as state:
            await state.set_many("orders", {"a": {"status": "open"}, "b": {"status": "confirmed"}})
            await state.set("trace-1", "step", 1)

    asyncio.run(fill())
    return url


@pytest.fixture
def server(store: str, ui_server: Callable[..., Server]) -> Server:
    return ui_server(store)


def base(server: Server) -> str:
    return server.url.rstrip("/")


def read_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name is not None:
            yield name, json.loads(line[6:])
            name = None


@pytest.mark.parametrize("scope", ["orders", None])
def test_a_change_from_another_process_reaches_the_event_stream_within_2s(
    server: Server, store: str, scope: str | None
) -> None:
    params = {"scope": scope} if scope else {}
    with httpx.stream("GET", base(server) + "/api/events", params=params, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
        assert next(events)[0] == "ready"
        started = time.monotonic()
        outside_write(store, "orders", "c", {"status": "new"})
        name, change = next(events)
        took = time.monotonic() - started
    print(f"event stream ({scope or 'every scope'}): the outside write arrived {took * 1000:.0f} ms after it started")
    assert name == "change"
    assert (change["event"], change["scope"], change["key"], change["new_value"]) == (
        "created",
        "orders",
        "c",
        {"status": "new"},
    )
    assert took < 2.0  # the process start of `motia-state set` included


def test_the_server_stops_at_once_with_event_streams_open(server: Server) -> None:
    with httpx.stream("GET", base(server) + "/api/events", timeout=10) as response:
        assert next(read_events(response))[0] == "ready"
        started = time.monotonic()
        err = server.stop()  # exit code 0, checked there
    assert time.monotonic() - started < 5
    assert "Traceback" not in err


def test_the_page_and_api_answer_over_http(server: Server, store: str) -> None:
    page = httpx.get(base(server) + "/")
    assert page.status_code == 200 and 'name="motia-state-token"' in page.text
    assert httpx.get(base(server) + "/api/scopes").json() == {"scopes": ["orders", "trace-1"], "next": None}
    token = page.text.split('name="motia-state-token" content="', 1)[1].split('"', 1)[0]
    assert len(token) >= 16
    body = {"scope": "orders", "key": "a", "value": '{"status": "shipped"}'}
    refused = httpx.post(base(server) + "/api/set", json=body)
    assert refused.status_code == 403
    done = httpx.post(base(server) + "/api/set", json=body, headers={"X-Motia-State-Token": token})
    assert done.status_code == 200 and done.json()["old_value"] == {"status": "open"}
    # Another process sees the write.
    got = subprocess.run([*CLI, "--url", store, "get", "orders", "a"], capture_output=True, text=True, check=True)
    assert json.loads(got.stdout) == {"status": "shipped"}


def test_read_only_never_writes_the_database_file(store: str, tmp_path: Path, ui_server: Callable[..., Server]) -> None:
    db = tmp_path / "state.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    served = ui_server(store, "--read-only")
    try:
        page = httpx.get(base(served) + "/")
        assert '<meta name="motia-state-read-only" content="true">' in page.text
        token = page.text.split('name="motia-state-token" content="', 1)[1].split('"', 1)[0]
        for path, params in (
            ("/api/info", {}),
            ("/api/scopes", {"search": "o"}),
            ("/api/entries", {"scope": "orders"}),
            ("/api/entry", {"scope": "orders", "key": "a"}),
            ("/api/history", {"scope": "orders", "key": "a"}),
            ("/api/triggers", {}),
        ):
            assert httpx.get(base(served) + path, params=params).status_code == 200, path
        with httpx.stream("GET", base(served) + "/api/events", params={"scope": "orders"}, timeout=10) as response:
            assert next(read_events(response))[0] == "ready"
        headers = {"X-Motia-State-Token": token}
        for path, body in (
            ("/api/set", {"scope": "orders", "key": "a", "value": "1"}),
            ("/api/delete", {"scope": "orders", "key": "a", "confirm": True}),
            ("/api/clear", {"scope": "orders", "confirm": True}),
        ):
            assert httpx.post(base(served) + path, json=body, headers=headers).status_code == 403
    finally:
        served.stop()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_read_only_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    done = subprocess.run(
        [*CLI, "--url", f"sqlite:///{missing}", "ui", "--read-only", "--port", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "no SQLite store" in done.stderr and not missing.exists()


def test_an_unreachable_store_fails_before_listening_with_the_password_masked() -> None:
    done = subprocess.run(
        [*CLI, "--url", "redis://:top-secret@127.0.0.1:1/0", "ui", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "top-secret" not in done.stderr + done.stdout and "127.0.0.1:1" in done.stderr
    assert done.stdout == ""


def test_a_port_in_use_is_an_error(store: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*CLI, "--url", store, "ui", "--port", str(port)], capture_output=True, text=True)
    assert done.returncode == 1 and f"127.0.0.1:{port}" in done.stderr, done.stderr


def test_a_short_token_is_refused(store: str) -> None:
    done = subprocess.run(
        [*CLI, "--url", store, "ui", "--port", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "MOTIA_STATE_UI_TOKEN": "short"},
    )
    assert done.returncode == 2 and "16 characters" in done.stderr
