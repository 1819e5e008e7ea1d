"""SPEC §11 across processes, through ``motia-state worker``: worker processes share a trigger's changes
(each handled once, per key in order, never two of one key at once), a SIGKILLed worker's change is taken
over within the lease, a restarted worker resumes where it stopped, SIGTERM stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from tests.services import shared_store_url

pytestmark = pytest.mark.timeout(240)

REDIS_DB_URL = os.environ.get("MOTIA_STATE_TEST_TRIGGERS_REDIS_URL", "redis://127.0.0.1:6379/10")
PG_PREFIX = "motia_state_trig_"
ROOT = Path(__file__).resolve().parents[2]
WITHIN = 90.0  # seconds: a bound for a hung test, not a measurement


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


class Workers:
    """``motia-state worker`` processes on one store, and the log their handler writes."""

    def __init__(self, url: str, log: Path, **env: str) -> None:
        self.url = url
        self.log = log
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TRIGGER_TEST_URL": url,
            "TRIGGER_TEST_LOG": str(log),
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1) -> None:
        script = str(Path(sys.executable).with_name("motia-state"))
        for _ in range(n):
            self.procs.append(subprocess.Popen([script, "worker", "tests.triggers.app:state"], cwd=ROOT, env=self.env))

    def lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def done(self) -> list[dict[str, Any]]:
        return [x for x in self.lines() if x["kind"] == "done"]

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=60)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@contextlib.asynccontextmanager
async def _running(url: str, log: Path, **env: str) -> AsyncIterator[tuple[Workers, StateManager]]:
    """Worker processes (none started yet) and a connected store of our own; both cleaned up after."""
    workers = Workers(url, log, **env)
    state = StateManager.from_url(url)
    try:
        await state.connect()
        yield workers, state
    finally:
        workers.close()
        await state.close()


def _each_key_in_order_one_at_a_time(workers: Workers) -> None:
    """From the handlers' own log: each key's changes ran in revision order, never two at once."""
    done = workers.done()
    starts = {x["revision"]: x for x in workers.lines() if x["kind"] == "start"}
    for key in {d["key"] for d in done}:
        mine = sorted((d for d in done if d["key"] == key), key=lambda d: starts[d["revision"]]["t"])
        assert [d["revision"] for d in mine] == sorted(d["revision"] for d in mine), f"{key} out of order"
        for a, b in itertools.pairwise(mine):
            assert a["t"] <= starts[b["revision"]]["t"], f"two handlers of {key} at once"


async def _until(check: Any, what: str) -> None:
    deadline = time.time() + WITHIN
    while not check():
        assert time.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _live_workers(state: StateManager) -> int:
    statuses = await state.adapter.trigger_store().status()  # type: ignore[attr-defined]
    return next((len(s.owners) for s in statuses if s.name == "jobs"), 0)


async def _live(state: StateManager, n: int) -> None:
    """Until ``n`` workers hold a heartbeat in the store."""
    deadline = time.time() + WITHIN
    while await _live_workers(state) < n:
        assert time.time() < deadline, f"{n} workers never showed up"
        await asyncio.sleep(0.2)


async def _balanced(state: StateManager, n: int) -> None:
    """Until ``n`` workers are live and have split the partitions (a worker rebalances every lease/3)."""
    await _live(state, n)
    await asyncio.sleep(4)  # one more rebalancing round of every worker (lease 9 s / 3)


async def test_three_workers_share_300_changes_over_30_keys(store_url: str, tmp_path: Path) -> None:
    async with _running(store_url, tmp_path / "log.jsonl", TRIGGER_TEST_LEASE="9") as (workers, state):
        workers.start(3)
        await _balanced(state, 3)
        for i in range(300):
            await state.set("jobs", f"k{i % 30}", i)
        await state.set("elsewhere", "k0", "not for this trigger")
        await _until(lambda: len(workers.done()) >= 300, "300 handled changes")
        await asyncio.sleep(1)  # nothing more should come
        assert [workers.stop(p) for p in workers.procs] == [0, 0, 0]
    done = workers.done()
    revisions = [d["revision"] for d in done]
    assert len(revisions) == 300 and len(set(revisions)) == 300, "a change was handled twice or not at all"
    assert {d["value"] for d in done} == set(range(300))
    assert len({d["pid"] for d in done}) > 1, "one worker did all the work"
    _each_key_in_order_one_at_a_time(workers)


async def test_a_sigkilled_workers_change_is_taken_over_within_the_lease(store_url: str, tmp_path: Path) -> None:
    lease = 3.0
    async with _running(
        store_url, tmp_path / "log.jsonl", TRIGGER_TEST_LEASE=str(lease), TRIGGER_TEST_HANG_KEY="hang"
    ) as (workers, state):
        workers.start(2)
        await _live(state, 2)
        await asyncio.sleep(lease)  # split
        await state.set("jobs", "hang", 1)
        await state.set("jobs", "other", 2)
        marker = (tmp_path / "log.jsonl").with_suffix(".hung")
        await _until(marker.exists, "the handler to hang")
        await asyncio.sleep(0.2)
        victim = int(marker.read_text())
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        await _until(lambda: any(d["key"] == "hang" for d in workers.done()), "the hung change to be taken over")
        taken_over = next(d for d in workers.done() if d["key"] == "hang")
        assert taken_over["pid"] != victim
        # Within the lease (plus the takeover's own rebalancing period, lease / 3, and a margin).
        assert taken_over["t"] - killed_at < lease + lease / 3 + 5
        assert [d["key"] for d in workers.done()].count("other") == 1


async def test_a_restarted_worker_resumes_after_what_it_finished(store_url: str, tmp_path: Path) -> None:
    async with _running(store_url, tmp_path / "log.jsonl", TRIGGER_TEST_LEASE="6") as (workers, state):
        workers.start(1)
        await _live(state, 1)
        for i in range(10):
            await state.set("jobs", f"k{i}", i)
        await _until(lambda: len(workers.done()) >= 10, "the first 10")
        await asyncio.sleep(1)  # the last commit
        assert workers.stop(workers.procs[0]) == 0
        for i in range(10, 20):
            await state.set("jobs", f"k{i % 4}", i)  # written while no worker runs
        workers.start(1)
        await _until(lambda: len(workers.done()) >= 20, "the 10 written while stopped")
        await asyncio.sleep(1.5)
        assert workers.stop(workers.procs[1]) == 0
    values = sorted(d["value"] for d in workers.done())
    assert values == list(range(20)), "a change was handled twice, or lost across the restart"


async def test_workers_joining_mid_stream_hand_over_keys_without_repeats_or_overlap(
    store_url: str, tmp_path: Path
) -> None:
    """Partitions change hands while changes flow: a worker hands one over only after its handlers there end."""
    # A lease long enough that a loaded machine never lets one lapse (a lapse is a takeover: at least once).
    async with _running(store_url, tmp_path / "log.jsonl", TRIGGER_TEST_LEASE="6") as (workers, state):
        workers.start(1)
        await _live(state, 1)
        for i in range(240):
            await state.set("jobs", f"k{i % 24}", i)
            if i == 40:
                workers.start(2)  # they join and take partitions over while the first is busy
            await asyncio.sleep(0.03)
        await _until(lambda: len(workers.done()) >= 240, "240 handled changes")
        await asyncio.sleep(1.5)
        assert [workers.stop(p) for p in workers.procs] == [0, 0, 0]
    done = workers.done()
    assert sorted(d["value"] for d in done) == list(range(240)), "a change was handled twice or lost"
    assert len({d["pid"] for d in done}) > 1, "the joining workers took nothing over"
    _each_key_in_order_one_at_a_time(workers)
