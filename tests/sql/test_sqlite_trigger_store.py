"""The SQLite trigger store beyond the contract suite: processes sharing one file, leases fencing stale
owners across connections, retries taken once by racing stores, the stored format, locks and ``:memory:``,
and the engine in two worker processes (shared work, takeover after SIGKILL).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from motia_state import Change, StateManager
from motia_state.backends.sqlite import SQLiteAdapter
from motia_state.backends.sqlite.operations import ts
from motia_state.errors import StateBackendError
from motia_state.sql import TRIGGER_PARKED_TABLE, TRIGGER_PARTITIONS_TABLE, TRIGGER_WORKERS_TABLE, TRIGGERS_TABLE
from motia_state.triggers import PARTITIONS

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")  # ts(): the entries' expires_at format

# A worker process: acquires and commits in a loop on one trigger, now and then going quiet past its lease
# (so that the other process takes over) or releasing everything. It logs, per partition, the time spans
# it is sure to hold it (from the end of the call that granted or renewed the lease to the start of that
# call plus the lease: the store wrote lease_until at a moment inside the call), and how many of its
# commits the store accepted. Each accepted commit writes the position it last knew plus one: two holders
# at once would lose increments, which the table shows.
_WORKER = """
import asyncio, json, random, sys, time
from motia_state.backends.sqlite import SQLiteAdapter

URL, NAME, ME, SECONDS, OUT = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
LEASE = 0.4


async def main() -> None:
    adapter = SQLiteAdapter(URL, busy_timeout=30.0)
    await adapter.connect()
    store = adapter.trigger_store()
    rng = random.Random(ME)
    spans, accepted, stale_rejected, stale_accepted = [], {}, 0, 0
    print("ready", flush=True)
    sys.stdin.readline()
    known = {}
    deadline = time.time() + SECONDS
    while time.time() < deadline:
        t0 = time.time()
        claims = await store.acquire(NAME, ME, LEASE)
        t1 = time.time()
        known = {c.partition: c.position for c in claims}
        spans += [[p, t1, t0 + LEASE] for p in known]
        for p in list(known):
            for _ in range(rng.randint(1, 3)):
                c0 = time.time()
                if not await store.commit(NAME, ME, p, known[p] + 1, [], 1, 0, LEASE):
                    del known[p]
                    break
                spans.append([p, time.time(), c0 + LEASE])
                known[p] += 1
                accepted[p] = accepted.get(p, 0) + 1
        roll = rng.random()
        if roll < 0.12:
            # Quiet past the lease (and the heartbeat): every commit now must be refused.
            await asyncio.sleep(LEASE * 1.5)
            for p in list(known):
                if await store.commit(NAME, ME, p, known[p] + 1, [], 1, 0, LEASE):
                    stale_accepted += 1
                    accepted[p] = accepted.get(p, 0) + 1
                else:
                    stale_rejected += 1
        elif roll < 0.17:
            r0 = time.time()
            await store.release(NAME, ME)
            spans.append(["release", r0])  # held until the release began at least
        else:
            await asyncio.sleep(rng.random() * 0.03)
        spans.append(["call", time.time()])  # the spans above end before the next call at the latest
    await store.release(NAME, ME)
    await adapter.close()
    with open(OUT, "w") as f:
        json.dump({"spans": spans, "accepted": accepted, "stale_rejected": stale_rejected,
                   "stale_accepted": stale_accepted}, f)


asyncio.run(main())
"""

# A worker process running one trigger with the engine; it logs "revision key value" per handled change and
# stops (state.close()) when its stdin gets a line.
_ENGINE = """
import asyncio, sys
from motia_state import StateManager

URL, OUT = sys.argv[1], sys.argv[2]


async def main() -> None:
    state = StateManager.from_url(URL)
    out = open(OUT, "a", buffering=1)

    @state.on_change("e2e", scope="j", lease=1.5)
    async def handle(c) -> None:
        await asyncio.sleep(0.005)
        out.write(f"{c.revision} {c.key} {c.new_value}\\n")

    task = asyncio.ensure_future(state.run_triggers())
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await state.close()
    await task


asyncio.run(main())
"""


def _query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _change(revision: int, value: Any = 1) -> Change:
    return Change(revision, "created", "s", f"k{revision}", None, value, datetime.now(UTC))


def _held_spans(log: list[list[Any]]) -> list[tuple[int, float, float]]:
    """(partition, from, to) spans, each cut at the process's next call (it may have given the partition back)."""
    spans: list[tuple[int, float, float]] = []
    pending: list[tuple[int, float, float]] = []
    for item in log:
        if item[0] in ("call", "release"):
            spans += [(p, a, min(b, item[1])) for p, a, b in pending]
            pending = []
        else:
            pending.append((int(item[0]), float(item[1]), float(item[2])))
    spans += pending
    return [(p, a, b) for p, a, b in spans if a < b]


async def _prepared(path: Path) -> None:
    adapter = SQLiteAdapter(f"sqlite:///{path}")
    try:
        assert await adapter.trigger_store().register("shared", 0, PARTITIONS) == 0
    finally:
        await adapter.close()


def test_two_processes_never_hold_one_partition_at_once(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    asyncio.run(_prepared(db))
    outs = [tmp_path / f"w{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, f"sqlite:///{db}", "shared", f"w{i}", "4", str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, out in enumerate(outs)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            assert p.wait(120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = [json.loads(out.read_text()) for out in outs]

    # Exclusive: no span one process was sure to hold a partition overlaps one of the other's.
    mine, theirs = (_held_spans(log["spans"]) for log in logs)
    for p, a, b in mine:
        clash = [(q, c, d) for q, c, d in theirs if q == p and c < b and a < d]
        assert not clash, f"partition {p} held by both: {(a, b)} and {clash}"

    # Fenced: a commit after the lease ran out never counted; every accepted one moved the position by one.
    assert sum(log["stale_accepted"] for log in logs) == 0
    accepted: Counter[int] = Counter()
    for log in logs:
        accepted.update({int(p): n for p, n in log["accepted"].items()})
    positions = dict(_query(db, f'SELECT "partition", position FROM {TRIGGER_PARTITIONS_TABLE} ORDER BY 1'))
    assert positions == {p: accepted[p] for p in range(PARTITIONS)}
    [(handled,)] = _query(db, f"SELECT handled FROM {TRIGGERS_TABLE} WHERE name = 'shared'")
    assert handled == sum(accepted.values())

    # Not vacuous: both held partitions, some partitions moved between them, and stale commits were tried.
    held_by = [{int(p) for p in log["accepted"]} for log in logs]
    assert held_by[0] and held_by[1] and held_by[0] & held_by[1]
    assert sum(log["stale_rejected"] for log in logs) > 0
    # Both released at the end: nothing is held, nobody is alive.
    assert _query(db, f"SELECT count(*) FROM {TRIGGER_PARTITIONS_TABLE} WHERE owner IS NOT NULL") == [(0,)]
    assert _query(db, f"SELECT count(*) FROM {TRIGGER_WORKERS_TABLE}") == [(0,)]


async def test_a_stale_owner_is_fenced_off_across_connections(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    one, two = SQLiteAdapter(f"sqlite:///{db}"), SQLiteAdapter(f"sqlite:///{db}")
    try:
        a, b = one.trigger_store(), two.trigger_store()
        assert a is one.trigger_store() and a is not b  # one store per adapter
        await a.register("t", 0, PARTITIONS)
        assert len(await a.acquire("t", "a", 0.3)) == PARTITIONS
        assert await a.commit("t", "a", 3, 10, [12, 15], 2, 1, 0.3)
        await asyncio.sleep(0.5)
        # The lease ran out: refused even though nobody took the partition, and nothing was written.
        assert not await a.commit("t", "a", 3, 11, [], 5, 5, 0.3)
        row = _query(db, f'SELECT position, done, owner FROM {TRIGGER_PARTITIONS_TABLE} WHERE "partition" = 3')
        assert row == [(10, "[12,15]", "a")]
        assert _query(db, f"SELECT handled, skipped FROM {TRIGGERS_TABLE}") == [(2, 1)]

        taken = {c.partition: c for c in await b.acquire("t", "b", 30)}  # a's heartbeat ran out too
        assert set(taken) == set(range(PARTITIONS))
        assert (taken[3].position, taken[3].done) == (10, frozenset({12, 15}))
        assert not await a.commit("t", "a", 3, 20, [], 1, 0, 30)
        assert await a.acquire("t", "a", 30) == []  # counted again, but b holds everything until it renews
        assert await b.commit("t", "b", 3, 16, [], 1, 0, 30)
        assert _query(db, f"SELECT DISTINCT owner FROM {TRIGGER_PARTITIONS_TABLE}") == [("b",)]
        assert _query(db, f"SELECT handled, skipped FROM {TRIGGERS_TABLE}") == [(3, 1)]
        claims = await b.acquire("t", "b", 30)  # b keeps everything, half of it flagged as surplus
        assert len(claims) == PARTITIONS and sum(c.surplus for c in claims) == PARTITIONS // 2
        await b.release("t", "b", [c.partition for c in claims if c.surplus])
        assert len(await a.acquire("t", "a", 30)) == PARTITIONS // 2
    finally:
        await one.close()
        await two.close()


async def test_racing_stores_take_each_retry_once(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    adapters = [SQLiteAdapter(f"sqlite:///{db}") for _ in range(2)]
    try:
        stores = [a.trigger_store() for a in adapters]
        await stores[0].register("t", 0, PARTITIONS)
        for rev in range(1, 201):
            await stores[rev % 2].park("t", _change(rev), "RuntimeError: no", 5)
        assert await stores[1].request_retry("t") == 200

        async def drain(i: int) -> list[int]:
            got: list[int] = []
            while taken := await stores[i % 2].take_retries("t", 3):
                got += [p.change.revision for p in taken]
            return got

        # Four loops per store: each store's worker thread runs its own transactions, the two threads race.
        results = await asyncio.gather(*(drain(i) for i in range(8)))
        everything = [rev for got in results for rev in got]
        assert sorted(everything) == list(range(1, 201)), Counter(everything).most_common(3)
        assert _query(db, f"SELECT count(*) FROM {TRIGGER_PARKED_TABLE} WHERE retry <> 0") == [(0,)]
        assert await stores[0].take_retries("t", 10) == []
    finally:
        for a in adapters:
            await a.close()


async def test_stored_format(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    adapter = SQLiteAdapter(f"sqlite:///{db}")
    try:
        store = adapter.trigger_store()
        await store.register("t", 4, PARTITIONS)
        await store.acquire("t", "w", 30)
        await store.commit("t", "w", 0, 9, [11, 13], 1, 0, 30)
        exact = {"big": 2**70, "one": 1.0, "text": "é\0"}
        at = datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=UTC)
        await store.park("t", Change(7, "updated", "s", "k", [1.0], exact, at), "E: \udcff", 5)
        [(old, new, stamp, parked_at, error, retry)] = _query(
            db, f"SELECT old_value, new_value, at, parked_at, error, retry FROM {TRIGGER_PARKED_TABLE}"
        )
        assert (old, new) == ("[1.0]", '{"big":1180591620717411303424,"one":1.0,"text":"é\\u0000"}')
        assert stamp == "2026-12-02 01:02:03.456789" and STAMP.match(parked_at)
        assert error == "E: \\udcff" and retry == 0  # a lone surrogate kept readable, not refused
        [parked] = (await store.status())[0].parked
        assert parked.change.at == at and parked.change.new_value == exact
        assert type(parked.change.new_value["one"]) is float and type(parked.change.old_value[0]) is float
        for (until,) in _query(db, f"SELECT lease_until FROM {TRIGGER_PARTITIONS_TABLE}"):
            assert STAMP.match(until)
        [(alive,)] = _query(db, f"SELECT alive_until FROM {TRIGGER_WORKERS_TABLE}")
        assert STAMP.match(alive)
        first_two = f'SELECT position, done FROM {TRIGGER_PARTITIONS_TABLE} WHERE "partition" < 2 ORDER BY "partition"'
        assert _query(db, first_two) == [(9, "[11,13]"), (4, "[]")]
    finally:
        await adapter.close()


async def test_write_lock_held_elsewhere(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    adapter = SQLiteAdapter(f"sqlite:///{db}", busy_timeout=1.0)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        store = adapter.trigger_store()
        await store.register("t", 0, PARTITIONS)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StateBackendError, match="busy_timeout"):
            await store.acquire("t", "w", 30)
        # Reading needs no write lock: the usual "no retry asked" and the CLI's status answer at once.
        started = time.monotonic()
        assert await store.take_retries("t", 10) == []
        assert [s.name for s in await store.status()] == ["t"]
        assert time.monotonic() - started < 0.5  # far below busy_timeout: no wait for the lock
        other.execute("ROLLBACK")
        assert len(await store.acquire("t", "w", 30)) == PARTITIONS
    finally:
        other.close()
        await adapter.close()


async def test_a_memory_database_keeps_its_triggers() -> None:
    adapter = SQLiteAdapter("sqlite:///:memory:")
    try:
        store = adapter.trigger_store()
        assert await store.register("t", 3, PARTITIONS) == 3
        assert len(await store.acquire("t", "w", 30)) == PARTITIONS
        assert await store.commit("t", "w", 5, 8, [], 1, 0, 30)
        await store.park("t", _change(9), "E", 1)
        [status] = await store.status()
        assert status.positions[5] == 8 and status.position == 3 and status.owners == ("w",)
        assert [p.change.revision for p in status.parked] == [9]
    finally:
        await adapter.close()


def _handled(out: Path) -> list[tuple[int, str, int]]:
    if not out.exists():
        return []
    lines = [line.split() for line in out.read_text().splitlines()]
    return [(int(rev), key, int(value)) for rev, key, value in lines]


def _wait(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_two_worker_processes_share_a_trigger_and_take_over_after_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    url = f"sqlite:///{db}"
    outs = [tmp_path / f"e{i}.log" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ENGINE, url, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for out in outs
    ]

    def split() -> bool:
        if not db.exists():
            return False
        try:
            rows = _query(
                db,
                f"SELECT owner, count(*) FROM {TRIGGER_PARTITIONS_TABLE} "
                "WHERE name = 'e2e' AND lease_until > ? GROUP BY owner",
                (ts(time.time()),),
            )
        except sqlite3.OperationalError:
            return False  # the schema is being created
        return sorted(n for _, n in rows) == [PARTITIONS // 2] * 2

    async def write(start: int, count: int) -> list[int]:
        state = StateManager.from_url(url)
        try:
            first = await state.revision()
            for i in range(start, start + count):
                await state.set("j", f"k{i % 12}", i)
            return list(range(first + 1, await state.revision() + 1))
        finally:
            await state.close()

    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        # Written once both hold half of the partitions: no rebalancing while they handle.
        _wait(split, 30, "the two workers never split the partitions")
        revisions = asyncio.run(write(0, 120))
        assert len(revisions) == 120
        _wait(lambda: len(_handled(outs[0])) + len(_handled(outs[1])) >= 120, 30, "changes left unhandled")
        time.sleep(0.5)
        logs = [_handled(out) for out in outs]
        assert sorted(rev for log in logs for rev, _, _ in log) == revisions  # each handled once
        assert logs[0] and logs[1]  # by both
        for log in logs:  # one key in one process, in revision order
            for key in {k for _, k, _ in log}:
                values = [v for _, k, v in log if k == key]
                assert values == sorted(values)
        assert not {k for _, k, _ in logs[0]} & {k for _, k, _ in logs[1]}

        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        more = asyncio.run(write(120, 60))
        # The survivor takes the dead worker's partitions once their leases ran out (1.5 s), and handles all.
        _wait(lambda: set(more) <= {rev for rev, _, _ in _handled(outs[1])}, 30, "the dead worker's keys stalled")
        assert {k for _, k, _ in logs[0]} <= {k for rev, k, _ in _handled(outs[1]) if rev in more}
        assert procs[1].stdin is not None
        procs[1].stdin.write("stop\n")
        procs[1].stdin.flush()
        assert procs[1].wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert _query(db, f"SELECT count(*) FROM {TRIGGER_PARTITIONS_TABLE} WHERE owner IS NOT NULL") == [(0,)]
