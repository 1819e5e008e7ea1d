"""SPEC §10 across processes: 4 writer processes make 600 changes while ``motia-state watch`` runs in another
process; every change arrives exactly once, in revision order, with each key's old value the previous new
value; a second watcher resumed with ``--since`` the revision of the 300th change sees the other 300 exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import pytest

from motia_state import StateManager
from tests.feed.writer import COUNTERS, SCOPE
from tests.services import shared_store_url

WRITERS = 4
PER_WRITER = 150
TOTAL = WRITERS * PER_WRITER
READ_FOR = 120.0  # seconds allowed for all the changes to arrive (a bound for a hung test, not a measurement)
REDIS_DB_URL = os.environ.get("MOTIA_STATE_TEST_FEED_REDIS_URL", "redis://127.0.0.1:6379/13")
PG_PREFIX = "motia_state_feed_"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with shared_store_url(request.param, tmp_path, redis_url=REDIS_DB_URL, pg_prefix=PG_PREFIX) as url:
        yield url


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _cli(url: str, *args: str) -> list[str]:
    # The console script, as a user runs it.
    return [str(Path(sys.executable).with_name("motia-state")), "--url", url, *args]


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _read_changes(stream: TextIO, count: int) -> Iterator[tuple[float, dict[str, Any]]]:
    """``count`` JSON lines from a watcher's stdout, each with the time it was read."""
    for _ in range(count):
        line = stream.readline()
        if not line:
            return
        yield time.time(), json.loads(line)


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _watch(url: str, since: int, count: int) -> list[tuple[float, dict[str, Any]]]:
    """Run ``motia-state watch --since`` until it printed ``count`` changes; stop it with SIGTERM (exit 0)."""
    proc = subprocess.Popen(
        _cli(url, "watch", "--since", str(since)), stdout=subprocess.PIPE, text=True, env=_env(), bufsize=1
    )
    assert proc.stdout is not None
    try:
        got = list(_read_changes(proc.stdout, count))
    finally:
        code = _stop(proc)
    assert code == 0, f"motia-state watch exited {code}"
    return got


async def _revision(url: str) -> int:
    state = StateManager.from_url(url)
    try:
        return await state.revision()
    finally:
        await state.close()


def _check_chain(changes: list[dict[str, Any]]) -> None:
    revisions = [c["revision"] for c in changes]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions), "not strictly increasing"
    last: dict[str, Any] = {}
    for c in changes:
        k = c["key"]
        if k in last:
            assert c["old_value"] == last[k], f"{k}: old value {c['old_value']} is not the previous new value"
        else:
            assert c["event"] == "created" and c["old_value"] is None
        last[k] = c["new_value"]


@pytest.mark.timeout(300)
def test_four_writer_processes_one_watcher_then_a_resumed_one(store_url: str) -> None:
    start = asyncio.run(_revision(store_url))  # also creates/migrates the store before the children open it
    watcher = subprocess.Popen(
        _cli(store_url, "watch", SCOPE, "--since", str(start)), stdout=subprocess.PIPE, text=True, env=_env()
    )
    writers: list[subprocess.Popen[str]] = []
    try:
        writers = [
            subprocess.Popen(_python("-m", "tests.feed.writer", store_url, str(w), str(PER_WRITER)), env=_env())
            for w in range(WRITERS)
        ]
        assert watcher.stdout is not None
        deadline = time.time() + READ_FOR
        received = []
        for item in _read_changes(watcher.stdout, TOTAL):
            received.append(item)
            assert time.time() < deadline, f"only {len(received)} of {TOTAL} changes within {READ_FOR} s"
        assert [w.wait(timeout=READ_FOR) for w in writers] == [0] * WRITERS
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
        assert _stop(watcher) == 0
    changes = [c for _, c in received]
    assert len(changes) == TOTAL
    _check_chain(changes)
    counters = {c["key"]: c["new_value"] for c in changes if c["key"].startswith("counter")}
    assert sum(v["n"] for v in counters.values()) == TOTAL // 2 and len(counters) == COUNTERS
    sets = {c["key"] for c in changes if c["key"].startswith("w")}
    assert sets == {f"w{w}-{i}" for w in range(WRITERS) for i in range(1, PER_WRITER, 2)}
    # Delivery delay of the live watcher, printed for the log (the benchmark measures it properly).
    delays = sorted(t - datetime.fromisoformat(c["at"]).timestamp() for t, c in received)
    print(f"\n{store_url.split(':')[0]}: delay p50 {delays[len(delays) // 2]:.3f} s, max {delays[-1]:.3f} s")

    # A watcher resumed after the 300th change sees exactly the other 300, the same ones.
    middle = changes[TOTAL // 2 - 1]["revision"]
    resumed = [c for _, c in _watch(store_url, middle, TOTAL - TOTAL // 2)]
    assert resumed == changes[TOTAL // 2 :]
    # And nothing else was recorded: from the start, the all-scope history is exactly these 600.
    everything = [c for _, c in _watch(store_url, start, TOTAL)]
    assert everything == changes
