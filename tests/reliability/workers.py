"""Code run in child processes (multiprocessing ``spawn``): each child opens its own StateManager.

Kept in an importable module (not in the test files) because ``spawn`` children import their target.
Children report through return files/queues as plain data, never by raising across the process boundary.
"""

from __future__ import annotations

import asyncio
import os
import random
import traceback
from collections.abc import Callable, Coroutine
from multiprocessing.synchronize import Barrier
from typing import Any

from motia_state import StateError, StateManager

COUNTER_SCOPE = "reliability:counter"
MIXED_SCOPES = ("mix:a", "mix:b", "mix:%_*", "mix:{c}")
MIXED_KEYS = tuple(f"k{i}" for i in range(6))
TALLY_SCOPE = "mix:tally"


def well_formed(value: Any) -> bool:
    """The shape every mixed-workload writer stores: ``{"w": int, "i": int, "tag": [i, str(i)]}``."""
    return (
        type(value) is dict
        and set(value) == {"w", "i", "tag"}
        and type(value["w"]) is int
        and type(value["i"]) is int
        and value["tag"] == [value["i"], str(value["i"])]
    )


def _payload(worker: int, i: int) -> dict[str, Any]:
    return {"w": worker, "i": i, "tag": [i, str(i)]}


def _record(
    run: Callable[[], Coroutine[Any, Any, Any]], result_path: str, show: Callable[[Any], str] = lambda _: "ok"
) -> None:
    """Run ``run()`` in a new event loop; write ``show(result)``, or the traceback, to ``result_path``."""
    try:
        outcome = show(asyncio.run(run()))
    except BaseException:
        outcome = traceback.format_exc()
    with open(result_path, "w", encoding="utf-8") as f:
        f.write(outcome)


def increment_worker(url: str, n: int, barrier: Barrier, result_path: str) -> None:
    """Apply ``n`` increments to one key; write ``ok``, or the traceback, to ``result_path``."""

    async def run() -> None:
        state = StateManager.from_url(url)
        try:
            # Connect before the barrier so the increments themselves, not the start-up, race.
            await state.connect()
            await asyncio.to_thread(barrier.wait, 60)
            for _ in range(n):
                await state.update(COUNTER_SCOPE, "hits", [{"type": "increment", "path": "n", "by": 1}])
        finally:
            await state.close()

    _record(run, result_path)


def mixed_worker(url: str, worker: int, n: int, seed: int, barrier: Barrier, result_path: str) -> None:
    """Random set/delete/clear/cleanup/update/set_many/delete_many; records what happened.

    The result file holds ``repr`` of a dict: ``done`` (operations that returned), ``state_errors``
    (StateError subclasses, allowed, by class name), ``foreign`` (anything else: tracebacks) and
    ``tally`` (acknowledged increments of this worker's own counter, which nobody else touches).
    """
    rng = random.Random(seed)
    report: dict[str, Any] = {"done": 0, "state_errors": {}, "foreign": [], "tally": 0}

    async def one(state: StateManager, i: int) -> None:
        scope = rng.choice(MIXED_SCOPES)
        key = rng.choice(MIXED_KEYS)
        roll = rng.random()
        if roll < 0.35:
            ttl = rng.choice([None, None, 0.05, 0.2, 60.0])
            await state.set(scope, key, _payload(worker, i), ttl=ttl)
        elif roll < 0.5:
            await state.delete(scope, key)
        elif roll < 0.55:
            await state.clear(scope)
        elif roll < 0.62:
            await state.cleanup()
        elif roll < 0.72:
            # Replaces the whole value, keeping the well-formed shape.
            await state.update(scope, key, [{"type": "set", "path": "", "value": _payload(worker, i)}])
        elif roll < 0.8:
            batch = {k: _payload(worker, i) for k in rng.sample(MIXED_KEYS, 3)}
            await state.set_many(scope, batch, ttl=rng.choice([None, 0.1]))
        elif roll < 0.86:
            await state.delete_many(scope, rng.sample(MIXED_KEYS, 2))
        elif roll < 0.93:
            await state.update(TALLY_SCOPE, f"w{worker}", [{"type": "increment", "path": "n"}])
            report["tally"] += 1
        else:
            await state.get_many(scope, list(MIXED_KEYS))
            await state.items(scope, filters=[{"path": "w", "op": "eq", "value": worker}])
            await state.list_groups()

    async def run() -> None:
        state = StateManager.from_url(url)
        try:
            await state.connect()
            await asyncio.to_thread(barrier.wait, 60)
            for i in range(n):
                try:
                    await one(state, i)
                    report["done"] += 1
                except StateError as exc:
                    name = type(exc).__name__
                    report["state_errors"][name] = report["state_errors"].get(name, 0) + 1
                except Exception:
                    report["foreign"].append(traceback.format_exc())
        finally:
            await state.close()

    try:
        asyncio.run(run())
    except BaseException:
        report["foreign"].append(traceback.format_exc())
    with open(result_path, "w", encoding="utf-8") as f:
        f.write(repr(report))


def cleanup_worker(url: str, barrier: Barrier, result_path: str) -> None:
    """Call ``cleanup()`` once, right after the barrier; write the count (or the traceback)."""

    async def run() -> int:
        state = StateManager.from_url(url)
        try:
            await state.connect()
            await asyncio.to_thread(barrier.wait, 60)
            return await state.cleanup()
        finally:
            await state.close()

    _record(run, result_path, str)


def first_connect_worker(url: str, worker: int, barrier: Barrier, result_path: str) -> None:
    """Open a store that may not have its schema yet, at the same moment as the others, and write once."""

    async def run() -> None:
        state = StateManager.from_url(url)
        try:
            await asyncio.to_thread(barrier.wait, 60)
            await state.set("startup", f"w{worker}", worker)
        finally:
            await state.close()

    _record(run, result_path)


def crash_writer(url: str, ack_path: str, start: int) -> None:
    """Write forever; after each write returns, append one line naming it to ``ack_path``.

    Lines: ``set <i>`` (entry ``k<i>`` = {"i": i, ...}), ``many <i>`` (entries ``m<i>-0..2``) and
    ``inc`` (one acknowledged increment of the ``hits`` counter). The parent SIGKILLs this process.
    """
    fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def ack(line: str) -> None:
        os.write(fd, (line + "\n").encode())  # one write() per line: a kill cannot split it

    async def run() -> None:
        state = StateManager.from_url(url)
        await state.connect()
        i = start
        while True:
            await state.set("crash", f"k{i}", {"i": i, "pad": "x" * (i % 300), "list": list(range(i % 7))})
            ack(f"set {i}")
            if i % 5 == 0:
                await state.set_many("crash", {f"m{i}-{j}": {"i": i, "j": j} for j in range(3)})
                ack(f"many {i}")
            if i % 3 == 0:
                await state.update("crash", "hits", [{"type": "increment", "path": "n"}])
                ack("inc")
            i += 1

    asyncio.run(run())
