"""Timing machinery: the subject protocol, the workloads, and one measured row.

A *subject* is one way of doing the work: motia-state over an adapter, the raw driver doing the same SQL /
Redis commands with no motia-state layer, a plain driver doing the simplest equivalent statement, or a peer
library. Every workload is run on all of a row's subjects, in the same process and event loop, interleaved
slice by slice, so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = [
    "WORKLOADS",
    "Measurement",
    "Subject",
    "Workload",
    "measure",
    "measure_many",
    "measure_pair",
    "sample_value",
]


class Subject(Protocol):
    """What a workload drives. Return values are the decoded Python objects, as a user would get them."""

    name: str
    #: "motia", "raw", "plain" (the simplest-statement baseline) or "peer".
    kind: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def reset(self) -> None:
        """Empty the store (this benchmark's private database / db number / dict only)."""

    async def get(self, scope: str, key: str) -> Any: ...
    async def set(self, scope: str, key: str, value: Any) -> Any: ...
    async def update_inc(self, scope: str, key: str) -> Any:
        """Increment the field ``count`` by 1, atomically; return the new value."""

    async def list(self, scope: str) -> list[Any]: ...
    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None: ...
    async def clear(self, scope: str) -> int: ...


def sample_value(i: int) -> dict[str, Any]:
    """A small, typical workflow value (about 120 bytes of JSON)."""
    return {
        "customer": f"customer-{i}",
        "venue": "Blue Note",
        "status": "pending",
        "count": i,
        "seats": ["A1", "A2"],
        "paid": False,
    }


Op = Callable[[Subject, int, int], Awaitable[object]]
Prep = Callable[[Subject, int], Awaitable[None]]


async def _no_prep(subject: Subject, concurrency: int) -> None:
    return None


@dataclass(frozen=True)
class Workload:
    """One row kind: ``op(subject, task, i)`` is the timed operation; ``before`` an untimed per-op setup."""

    name: str
    op: Op
    prepare: Prep = _no_prep
    before: Op | None = None
    #: Entries written or read per operation (1000 for set_many), for per-entry rates.
    entries: int = 1


# --- the workloads ---------------------------------------------------------------------------------

_KEYS = 1000  # keys per hot scope: small enough to stay cached, big enough to avoid one hot row
_HOT = "bench-hot"
_BIG = 100  # entries in a listed / cleared scope


async def _prep_hot(s: Subject, concurrency: int) -> None:
    await s.set_many(_HOT, {f"k{i}": sample_value(i) for i in range(_KEYS)})


async def _op_set(s: Subject, task: int, i: int) -> object:
    return await s.set(_HOT, f"k{(task * 7919 + i) % _KEYS}", sample_value(i))


async def _op_get(s: Subject, task: int, i: int) -> object:
    return await s.get(_HOT, f"k{(task * 7919 + i) % _KEYS}")


async def _op_miss(s: Subject, task: int, i: int) -> object:
    return await s.get(_HOT, f"missing-{(task * 7919 + i) % _KEYS}")


async def _prep_update(s: Subject, concurrency: int) -> None:
    # One key per task: the row measures throughput, not lock contention on one row.
    await s.set_many("bench-upd", {f"u{t}": sample_value(t) for t in range(concurrency)})


async def _op_update(s: Subject, task: int, i: int) -> object:
    return await s.update_inc("bench-upd", f"u{task}")


async def _prep_list(s: Subject, concurrency: int) -> None:
    await s.set_many("bench-list", {f"e{i:03d}": sample_value(i) for i in range(_BIG)})


async def _op_list(s: Subject, task: int, i: int) -> object:
    return await s.list("bench-list")


_MANY = {f"m{i:04d}": sample_value(i) for i in range(1000)}


async def _op_set_many(s: Subject, task: int, i: int) -> object:
    await s.set_many(f"bench-many-{task}", _MANY)
    return None


_CLEAR_VALUES = {f"c{i:03d}": sample_value(i) for i in range(_BIG)}


async def _before_clear(s: Subject, task: int, i: int) -> object:
    await s.set_many(f"bench-clear-{task}", _CLEAR_VALUES)
    return None


async def _op_clear(s: Subject, task: int, i: int) -> object:
    return await s.clear(f"bench-clear-{task}")


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("set", _op_set, _prep_hot),
        Workload("get", _op_get, _prep_hot),
        Workload("get_miss", _op_miss, _prep_hot),
        Workload("update", _op_update, _prep_update),
        Workload("list100", _op_list, _prep_list, entries=_BIG),
        Workload("set_many1000", _op_set_many, entries=1000),
        Workload("clear100", _op_clear, before=_before_clear, entries=_BIG),
    )
}


# --- measuring -------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One timed run of one workload on one subject."""

    ops: int
    seconds: float
    latencies_us: list[float] = field(repr=False)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_us:
            return float("nan")
        ordered = sorted(self.latencies_us)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]

    def summary(self) -> dict[str, float]:
        return {
            "ops": self.ops,
            "seconds": self.seconds,
            "ops_per_s": self.ops_per_s,
            "p50_us": self.percentile(0.50),
            "p99_us": self.percentile(0.99),
        }


async def _continuous(subject: Subject, w: Workload, concurrency: int, duration: float) -> Measurement:
    lat: list[float] = []
    counts = [0] * concurrency
    clock = time.perf_counter
    deadline = 0.0

    async def worker(task: int) -> None:
        i = 0
        append = lat.append
        op = w.op
        while True:
            t0 = clock()
            if t0 >= deadline:
                break
            await op(subject, task, i)
            append((clock() - t0) * 1e6)
            i += 1
        counts[task] = i

    start = clock()
    deadline = start + duration
    await asyncio.gather(*(worker(t) for t in range(concurrency)))
    return Measurement(sum(counts), clock() - start, lat)


async def _rounds(subject: Subject, w: Workload, concurrency: int, duration: float) -> Measurement:
    """Each round: untimed setup for every task, then ``concurrency`` timed ops at once."""
    assert w.before is not None
    lat: list[float] = []
    clock = time.perf_counter
    timed = 0.0
    ops = 0
    i = 0
    started = clock()

    async def one(task: int) -> None:
        t0 = clock()
        await w.op(subject, task, i)
        lat.append((clock() - t0) * 1e6)

    # Bounded by the timed part, and by wall time too (setup is not free): at least 3 rounds.
    while (timed < duration and clock() - started < 4 * duration) or i < 3:
        for task in range(concurrency):
            await w.before(subject, task, i)
        t0 = clock()
        await asyncio.gather(*(one(t) for t in range(concurrency)))
        timed += clock() - t0
        ops += concurrency
        i += 1
    return Measurement(ops, timed, lat)


async def measure(subject: Subject, w: Workload, concurrency: int, duration: float) -> Measurement:
    """Prepare, warm up briefly (connections, prepared statements, caches), then time one run."""
    await w.prepare(subject, concurrency)
    run = _rounds if w.before is not None else _continuous
    await run(subject, w, concurrency, min(0.1, duration / 3))
    return await run(subject, w, concurrency, duration)


async def measure_many(
    subjects: Sequence[Subject], w: Workload, concurrency: int, duration: float, slices: int
) -> list[Measurement]:
    """One run of each subject, timed in rotating slices; the measurements in ``subjects`` order.

    The machine is shared and noisy: slicing the run exposes every subject to the same disturbances, so their
    ratios stay meaningful even when the absolute numbers move. Slice ``k`` runs the subjects rotated by ``k``
    (two subjects: a b, b a, a b, ...; three: a b c, b c a, c a b, ...), so each takes each place in turn.
    """
    run = _rounds if w.before is not None else _continuous
    for s in subjects:
        await w.prepare(s, concurrency)
    for s in subjects:
        await run(s, w, concurrency, min(0.1, duration / 3))
    parts: list[list[Measurement]] = [[] for _ in subjects]
    n = len(subjects)
    slice_s = duration / max(1, slices)
    for k in range(max(1, slices)):
        for index in [(k + j) % n for j in range(n)]:
            parts[index].append(await run(subjects[index], w, concurrency, slice_s))
    return [_merge(p) for p in parts]


async def measure_pair(
    a: Subject, b: Subject, w: Workload, concurrency: int, duration: float, slices: int
) -> tuple[Measurement, Measurement]:
    """``measure_many`` of two subjects (a b b a a b ...)."""
    ma, mb = await measure_many([a, b], w, concurrency, duration, slices)
    return ma, mb


def _merge(parts: list[Measurement]) -> Measurement:
    return Measurement(
        sum(m.ops for m in parts), sum(m.seconds for m in parts), [x for m in parts for x in m.latencies_us]
    )


def median_summary(runs: list[Measurement]) -> dict[str, Any]:
    """Median over runs of ops/s, p50 and p99 (each separately), plus every run's ops/s."""
    return {
        "ops_per_s": statistics.median(r.ops_per_s for r in runs),
        "p50_us": statistics.median(r.percentile(0.5) for r in runs),
        "p99_us": statistics.median(r.percentile(0.99) for r in runs),
        "runs_ops_per_s": [r.ops_per_s for r in runs],
        "ops": [r.ops for r in runs],
    }


def as_dict(obj: Any) -> dict[str, Any]:
    """dataclass -> dict (for the JSON results)."""
    return asdict(obj)
