"""Scale runs: a 100-entry scope on an empty table vs among 1,000,000 rows; cleanup; list_groups.

Rows are bulk-loaded with the raw driver (COPY, executemany in one transaction, pipelines) in the exact storage
format the adapter uses, not through the API, so that loading takes seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from bench.backends import make_backend
from bench.core import sample_value

__all__ = ["BulkLoader", "Row", "run_scale"]

#: (scope, key, JSON text, expiry as epoch seconds or None)
Row = tuple[str, str, str, float | None]

TARGET = "scale-target"
PER_SCOPE = 100


class BulkLoader(Protocol):
    """What a raw subject offers the scale run."""

    async def bulk_load(self, rows: Iterator[Row]) -> None:
        """Write ``rows`` as fast as the driver allows, in the adapter's storage format."""

    async def count_rows(self, expired: bool) -> int:
        """Rows stored (expired ones if ``expired``, else live ones), cleaned up or not."""

    async def settle(self) -> None:
        """Let the store be at rest before timing: what the database does on its own after a bulk load
        (VACUUM ANALYZE, a checkpoint), done now so that it does not run in the middle of the timing."""


def live_rows(n: int) -> Iterator[Row]:
    """``n`` live rows, 100 per scope, in scopes ``other-00000``…"""
    for i in range(n):
        yield (f"other-{i // PER_SCOPE:05d}", f"k{i % PER_SCOPE:03d}", f'{{"n":{i},"status":"live"}}', None)


def expired_rows(n: int, now: float) -> Iterator[Row]:
    """``n`` rows that expired an hour ago, 100 per scope, in scopes ``expired-00000``…"""
    for i in range(n):
        yield (f"expired-{i // PER_SCOPE:05d}", f"k{i % PER_SCOPE:03d}", f'{{"n":{i}}}', now - 3600.0)


async def _median_us(
    call: Callable[[], Awaitable[object]], n: int, before: Callable[[], Awaitable[object]] | None
) -> float:
    times: list[float] = []
    for _ in range(n):
        if before is not None:
            await before()
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


async def _time_scope_ops(state: Any, quick: bool) -> dict[str, float]:
    values = {f"t{i:03d}": sample_value(i) for i in range(PER_SCOPE)}
    await state.set_many(TARGET, values)
    n = 50 if quick else 300
    keys = list(values)
    counter = iter(range(10**9))

    async def get() -> object:
        return await state.get(TARGET, keys[next(counter) % PER_SCOPE])

    async def refill() -> None:
        await state.set_many(TARGET, values)

    async def concurrent(op: str, per_task: int) -> float:
        """Wall time per operation with 16 tasks at once (the adapters' batched paths), in µs."""

        async def task(t: int) -> None:
            for i in range(per_task):
                k = keys[(t * 7 + i) % PER_SCOPE]
                if op == "get":
                    await state.get(TARGET, k)
                else:
                    await state.set(TARGET, k, values[k])

        await asyncio.gather(*(task(t) for t in range(16)))  # warm: statements, plans
        rounds: list[float] = []
        for _ in range(3 if quick else 7):  # the median of several rounds: the machine is shared
            t0 = time.perf_counter()
            await asyncio.gather(*(task(t) for t in range(16)))
            rounds.append((time.perf_counter() - t0) * 1e6 / (16 * per_task))
        return statistics.median(rounds)

    out = {
        "get_c16": await concurrent("get", 5 if quick else 20),
        "set_c16": await concurrent("set", 3 if quick else 10),
        "get": await _median_us(get, n, None),
        "keys": await _median_us(lambda: state.keys(TARGET), max(20, n // 5), None),
        "clear": await _median_us(lambda: state.clear(TARGET), 10 if quick else 30, refill),
    }
    await state.set_many(TARGET, values)
    return out


async def _watch(count: Callable[[], Awaitable[int]], seen: list[int], stop: asyncio.Event) -> None:
    """Poll the number of expired rows from another connection while cleanup() runs."""
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a locked SQLite file or similar: just look again
            seen.append(await count())
        await asyncio.sleep(0.02)


async def run_scale(name: str, rows: int, *, quick: bool = False) -> dict[str, Any]:
    """The scale results of adapter ``name`` (its own database / file / db number)."""
    backend = await make_backend(name, db_suffix="_scale")
    await backend.open()
    raw = backend.raw
    loader: BulkLoader
    if name == "memory":
        from bench.raw_memory import MemoryLoader

        loader = MemoryLoader(backend.motia.state.adapter)
    else:
        loader = raw  # type: ignore[assignment]
    state = backend.motia.state
    try:
        await raw.reset()
        await loader.settle()
        empty = await _time_scope_ops(state, quick)
        n_expired = rows // 5
        t0 = time.perf_counter()
        await loader.bulk_load(live_rows(rows))
        await loader.bulk_load(expired_rows(n_expired, time.time()))
        await loader.settle()
        load_s = time.perf_counter() - t0
        full = await _time_scope_ops(state, quick)

        t0 = time.perf_counter()
        groups = await state.list_groups()
        groups_s = time.perf_counter() - t0

        live_before = await loader.count_rows(expired=False)
        seen: list[int] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(lambda: loader.count_rows(expired=True), seen, stop))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        removed = await state.cleanup()
        cleanup_s = time.perf_counter() - t0
        stop.set()
        await watcher
        expired_after = await loader.count_rows(expired=True)
        live_after = await loader.count_rows(expired=False)
        # A count strictly between "all" and "none", seen from another connection, means a batch committed.
        intermediate = sorted({c for c in seen if 0 < c < n_expired}, reverse=True)
        if name == "redis":
            batches = "Lua script per scope, <= 1,000 members each"
        elif name == "memory":
            batches = "one pass in process"
        else:
            batches = f"{len(intermediate) + 1}+ commits seen" if intermediate else "one commit seen"
        return {
            "rows": rows,
            "scopes": rows // PER_SCOPE,
            "load_s": load_s,
            "ops": {op: {"empty_us": empty[op], "full_us": full[op], "ratio": full[op] / empty[op]} for op in empty},
            "list_groups": {"groups": len(groups), "seconds": groups_s},
            "cleanup": {
                "expired": n_expired,
                "removed": removed,
                "expired_left": expired_after,
                "live": live_before,
                "live_after": live_after,
                "seconds": cleanup_s,
                "rows_per_s": removed / cleanup_s if cleanup_s > 0 else 0.0,
                "batches": batches,
                "intermediate_counts": intermediate[:20],
            },
        }
    finally:
        try:
            await raw.reset()
        finally:
            await backend.close()


def json_text(value: Any) -> str:
    """The JSON text the adapters store (compact, UTF-8 as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
