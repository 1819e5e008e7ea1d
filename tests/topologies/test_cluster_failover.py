"""SPEC §12: a Redis Cluster master's failover is survived by the same StateManager.

One master is SIGKILLed while one manager keeps writing and reading keys in that master's slots. During the
failover window every failure must be a ``StateBackendError`` (never a raw ``MOVED``/``ClusterDownError``/
``ConnectionError``); once its replica is promoted, the same manager works normally again and an open
``watch(scope)`` resumes. The killed node is restarted at the end (it rejoins as a replica), so the cluster is
whole for the tests after this one.

Redis replicates asynchronously, so a write acknowledged just before the kill may be lost by the failover.
The entries whose survival is checked, and the watched scope's changes, are therefore written and replicated
(the replica's offset caught up with its master's) before the kill; the writes during the window only check
the errors and the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from motia_state import Change, StateBackendError
from tests.topologies.redis import CLUSTER_PORT, CLUSTER_SCRIPT, make_redis_cluster

pytestmark = pytest.mark.redis

PREFIX = "motia:state:"
OP_BOUND = 45.0  # seconds one operation may take during the failover before the test calls it hung
PROMOTION_BOUND = 30.0  # seconds for the replica to be promoted and the cluster ok again (~3-5 s expected)
RECOVERY_BOUND = 30.0  # seconds after the promotion for the manager's first success
WATCH_BOUND = 20.0
SETTLE = 1.0  # seconds the writer goes on after its first success past the promotion (failures still checked)


def node(port: int) -> aioredis.Redis:
    """A plain (non-cluster) client on one node, for CLUSTER/INFO/ROLE."""
    return aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2, socket_timeout=5)


async def on_node(port: int, *command: Any) -> Any:
    client = node(port)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


def parse_nodes(text: str | bytes) -> list[dict[str, Any]]:
    """CLUSTER NODES as dicts: id, port, flags, master (id or '-'), slots [(start, end)]."""
    if isinstance(text, bytes):
        text = text.decode()
    out = []
    for line in text.strip().splitlines():
        fields = line.split()
        ranges = []
        for spec in fields[8:]:
            if spec.startswith("["):  # a slot being migrated
                continue
            start, _, end = spec.partition("-")
            ranges.append((int(start), int(end or start)))
        out.append(
            {
                "id": fields[0],
                "port": int(fields[1].split("@")[0].rpartition(":")[2]),
                "flags": set(fields[2].split(",")),
                "master": fields[3],
                "slots": ranges,
            }
        )
    return out


async def topology(port: int) -> list[dict[str, Any]]:
    return parse_nodes(await on_node(port, "CLUSTER", "NODES"))


async def cluster_ok(port: int) -> bool:
    try:
        info = await on_node(port, "CLUSTER", "INFO")
    except Exception:
        return False
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


async def replicated(master_port: int, within: float = 10.0) -> None:
    """Wait until every replica of the master has its master's replication offset."""
    deadline = time.monotonic() + within
    while True:
        info = await node_info(master_port, "replication")
        offset = int(info["master_repl_offset"])
        offsets = [int(v["offset"]) for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
        if offsets and min(offsets) >= offset:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the replica of {master_port} did not catch up within {within} s: {info}")
        await asyncio.sleep(0.05)


async def node_info(port: int, section: str) -> dict[str, Any]:
    """INFO ``section`` of one node, as redis-py parses it (``slaveN`` values are dicts)."""
    info = await on_node(port, "INFO", section)
    assert isinstance(info, dict), info
    return info


def restart_node(port: int) -> None:
    env = {**os.environ, "MOTIA_STATE_CLUSTER_PORT": str(CLUSTER_PORT)}
    done = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "restart-node", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"restart-node {port} failed:\n{done.stdout}\n{done.stderr}"


def describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc)[:300]}"


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what()}")
        await asyncio.sleep(0.1)


async def test_a_master_failover_is_survived_by_the_same_manager(tmp_path: Path) -> None:
    state = await make_redis_cluster(tmp_path, connect_timeout=2)
    nodes = await topology(CLUSTER_PORT)
    masters = [n for n in nodes if "master" in n["flags"] and n["slots"]]
    assert len(masters) == 3, f"expected 3 masters with slots: {nodes}"
    # The victim: a master with a live replica.
    victim = next(m for m in masters if any(n["master"] == m["id"] and "fail" not in n["flags"] for n in nodes))
    [replica] = [n for n in nodes if n["master"] == victim["id"]]

    def on_victim(scope: str) -> bool:
        slot = key_slot(f"{PREFIX}{{{scope}}}:k".encode())
        return any(start <= slot <= end for start, end in victim["slots"])

    scopes = [s for s in (f"fo-{i}" for i in range(400)) if on_victim(s)][:6]
    assert len(scopes) == 6, "no scopes hash to the victim's slots"
    watched, busy = scopes[0], scopes[1:]
    victim_pid = int((await node_info(victim["port"], "server"))["process_id"])

    stable = {f"stable-{i}": {"i": i} for i in range(20)}
    outcomes: Counter[str] = Counter()
    bad: list[str] = []  # failures that are not StateBackendError
    successes_after: list[float] = []  # monotonic times of successful operations
    promoted_at: float | None = None
    stop = asyncio.Event()
    delivered: list[Change] = []
    watch_error: list[str] = []

    async def consume(changes: Any) -> None:
        try:
            async for change in changes:
                delivered.append(change)
        except StateBackendError as exc:
            watch_error.append(describe(exc))
        except Exception as exc:
            watch_error.append("raw: " + describe(exc))

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            scope = busy[n % len(busy)]
            for op in ("set", "get"):
                try:
                    if op == "set":
                        await asyncio.wait_for(state.set(scope, f"k{n % 10}", {"n": n}), OP_BOUND)
                    else:
                        await asyncio.wait_for(state.get(scope, f"k{n % 10}"), OP_BOUND)
                except StateBackendError:
                    outcomes[f"{op}: StateBackendError"] += 1
                    await asyncio.sleep(0.05)
                except TimeoutError:
                    bad.append(f"{op} hung for {OP_BOUND} s")
                except Exception as exc:
                    bad.append(f"{op}: {describe(exc)}")
                else:
                    outcomes[f"{op}: ok"] += 1
                    successes_after.append(time.monotonic())

    killed = False
    consumer: asyncio.Task[None] | None = None
    write_task: asyncio.Task[None] | None = None
    try:
        await state.set_many(watched, stable)
        for scope in busy:
            await state.set(scope, "k0", {"n": 0})
        async with state.watch(watched) as changes:
            consumer = asyncio.ensure_future(consume(changes))
            await state.set(watched, "before", "kill")
            await eventually(
                lambda: asyncio.sleep(0, any(c.key == "before" for c in delivered)),
                WATCH_BOUND,
                lambda: f"the watch of {watched!r} delivered the pre-kill change (got {delivered})",
            )
            await replicated(victim["port"])

            write_task = asyncio.ensure_future(writer())
            await asyncio.sleep(0.5)
            assert outcomes["set: ok"] > 0, f"no write succeeded before the kill: {outcomes} {bad}"
            os.kill(victim_pid, signal.SIGKILL)
            killed = True
            killed_at = time.monotonic()

            async def promoted() -> bool:
                try:
                    role = await on_node(replica["port"], "ROLE")
                except Exception:
                    return False
                return role[0] in (b"master", "master") and await cluster_ok(replica["port"])

            await eventually(
                promoted,
                PROMOTION_BOUND,
                lambda: f"replica {replica['port']} of the killed master {victim['port']} was promoted",
            )
            promoted_at = time.monotonic()
            await eventually(
                lambda: asyncio.sleep(0, any(t > promoted_at for t in successes_after)),
                RECOVERY_BOUND,
                lambda: f"the manager's first success after the promotion ({outcomes}, non-backend errors: {bad})",
            )
            recovered_at = time.monotonic()
            await asyncio.sleep(SETTLE)  # the writer goes on: its pooled connections catch up with the new map
            stop.set()
            await asyncio.wait_for(write_task, OP_BOUND * 2 + 5)

            assert not bad, "during the failover some failures were not StateBackendError:\n" + "\n".join(
                f"  {m} x{c}" for m, c in Counter(bad).most_common(10)
            )

            # The same manager works normally: every write and read succeeds, the replicated entries survived.
            for i in range(30):
                scope = busy[i % len(busy)]
                await asyncio.wait_for(state.set(scope, f"after{i}", i), OP_BOUND)
                assert await asyncio.wait_for(state.get(scope, f"after{i}"), OP_BOUND) == i
            assert await state.get_many(watched, list(stable)) == stable
            result = await state.update(watched, "stable-3", [{"type": "increment", "path": "i", "by": 10}])
            assert result.new_value == {"i": 13}

            # The open watch resumed: it delivers a change made after the failover, revisions still increasing.
            assert not watch_error, f"the watch ended during the failover: {watch_error[0]}"
            await state.set(watched, "after", "failover")
            await eventually(
                lambda: asyncio.sleep(0, any(c.key == "after" for c in delivered) or bool(watch_error)),
                WATCH_BOUND,
                lambda: f"the watch of {watched!r} resumed after the failover (delivered: {delivered[-3:]})",
            )
            assert not watch_error, f"the watch ended after the failover: {watch_error[0]}"
            revisions = [c.revision for c in delivered]
            assert revisions == sorted(set(revisions)), f"revisions not strictly increasing: {revisions}"
            last = delivered[-1]
            assert (last.key, last.new_value, last.scope) == ("after", "failover", watched)
            print(
                f"\nfailover: promoted {promoted_at - killed_at:.1f} s after the kill, manager recovered "
                f"{recovered_at - promoted_at:.1f} s after that; outcomes {dict(outcomes)}"
            )
    finally:
        stop.set()
        for task in (write_task, consumer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await state.close()
        if killed:  # the cluster whole again for the later tests (restart-node waits for cluster_state:ok)
            await asyncio.to_thread(restart_node, victim["port"])
