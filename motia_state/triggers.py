"""Durable state triggers (SPEC §11): each matching change handled once, by one of many worker processes.

How the work is shared, in five lines:

1. A trigger's changes are split into ``PARTITIONS`` partitions by a hash of (scope, key): one key, one partition.
2. Each worker process holds leases on a fair share of the partitions (renewed, taken over when they expire:
   Kafka's consumer-group model on the store's own primitives: row locks in SQL, atomic scripts in Redis).
3. A worker follows the change feed (``watch``) from its partitions' committed positions, and runs handlers
   concurrently across keys (``concurrency``) but one at a time per key, in revision order.
4. After each handled change it commits the partition's position (the revision below which everything is
   done) plus the revisions done above it, fenced by its lease: a crash re-runs only what was not recorded.
5. A handler that keeps failing is retried with backoff, then parked with its error; the key moves on.

The store side is a :class:`TriggerStore` (``adapter.trigger_store()``); this module holds the engine, the
public records and the in-process store the memory backend uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from .changes import EVENTS, Change, utc_from_epoch
from .errors import ChangesCompactedError, StateBackendError, StateValueError
from .telemetry import Described, run_handler
from .telemetry import current as current_telemetry

if TYPE_CHECKING:
    from .changes import ChangeSource, ChangeStream

__all__ = ["PARTITIONS", "Claim", "MemoryTriggerStore", "Parked", "Trigger", "TriggerStatus", "TriggerStore"]

log = logging.getLogger("motia_state")

#: Partitions of every trigger: the most worker processes that can share one trigger's work.
PARTITIONS: Final = 16
#: Seconds in-flight handlers get to finish at shutdown before their changes are left for redelivery.
GRACE: Final = 10.0
#: Most changes a worker holds read but not yet handled (reading pauses above it).
BACKLOG: Final = 2000
#: Seconds between commits of progress made by skipped changes only, and between checks for retries.
TICK: Final = 0.5
#: Longest backoff between two attempts of a failing handler (SPEC §11: 1 s, doubling, at most 60 s).
MAX_BACKOFF: Final = 60.0

#: A trigger's handler: ``async def handler(change: Change) -> None`` (a plain function works too).
Handler = Callable[[Change], Any]


class TriggerOwner(Protocol):
    """What the engine needs of its StateManager (a protocol: this module does not import the manager)."""

    _trigger_runs: set[TriggerRun]
    _telemetry: Described

    def watch(self, scope: str | None = None, *, key: str | None = None, since: int | None = None) -> ChangeStream: ...
    async def _connected_adapter(self) -> ChangeSource: ...


def partition_of(scope: str, key: str, partitions: int = PARTITIONS) -> int:
    """The partition of an entry: the same in every process and version (CRC-32 of scope NUL key)."""
    return zlib.crc32(f"{scope}\0{key}".encode("utf-8", "surrogatepass")) % partitions


@dataclass(frozen=True, slots=True)
class Trigger:
    """A registered trigger: what it reacts to, and how it runs."""

    name: str
    handler: Handler
    scope: str | None = None
    key: str | None = None
    events: frozenset[str] | None = None
    condition: Callable[[Change], Any] | None = None
    start: Literal["now", "beginning"] = "now"
    concurrency: int = 16
    max_attempts: int = 5
    lease: float = 30.0

    def matches(self, change: Change) -> bool:
        """Whether the handler should run for ``change`` (scope, key, events and condition)."""
        if self.scope is not None and change.scope != self.scope:
            return False
        if self.key is not None and change.key != self.key:
            return False
        if self.events is not None and change.event not in self.events:
            return False
        return self.condition is None or bool(self.condition(change))


@dataclass(frozen=True, slots=True)
class Claim:
    """A partition a worker holds: its committed position and the revisions done above it."""

    partition: int
    position: int
    done: frozenset[int] = frozenset()
    #: Held beyond the owner's fair share: finish its changes in flight, then give it back (``release``).
    surplus: bool = False


@dataclass(frozen=True, slots=True)
class Parked:
    """A change whose handler failed ``attempts`` times; kept with its last error until retried."""

    trigger: str
    change: Change
    error: str
    attempts: int
    parked_at: datetime
    retry: bool = False


@dataclass(frozen=True, slots=True)
class TriggerStatus:
    """A trigger's progress as the store has it (``motia-state triggers``)."""

    name: str
    start_revision: int
    positions: tuple[int, ...]
    handled: int
    skipped: int
    owners: tuple[str, ...]
    parked: tuple[Parked, ...] = ()

    @property
    def position(self) -> int:
        """The revision up to which every change is done (the lowest partition position)."""
        return min(self.positions) if self.positions else self.start_revision


class TriggerStore(Protocol):
    """Where triggers keep their progress; one per backend (``adapter.trigger_store()``).

    Leases use the store's clock. Every method is atomic on its own.
    """

    async def register(self, name: str, start: int, partitions: int) -> int:
        """Create the trigger at ``start`` unless it exists; return its start revision."""

    async def acquire(self, name: str, owner: str, lease: float) -> list[Claim]:
        """Heartbeat ``owner`` (live ``lease`` seconds); renew all its live claims, flagging as ``surplus``
        the ones beyond its fair share (partitions divided by live owners, rounded up); when below that share,
        claim free or expired partitions up to it. Return the owner's claims. Nothing is given back here: the
        engine releases a surplus partition once its in-flight handlers are done, so no key ever runs in two
        workers at once."""

    async def commit(
        self,
        name: str,
        owner: str,
        partition: int,
        position: int,
        done: Sequence[int],
        handled: int,
        skipped: int,
        lease: float,
    ) -> bool:
        """Record a partition's progress (adding ``handled``/``skipped`` to its counts) and renew its lease,
        only while ``owner`` holds it; False when it does not any more."""

    async def release(self, name: str, owner: str, partitions: Sequence[int] | None = None) -> None:
        """Give back ``partitions`` held by ``owner``; None: every claim, and forget its heartbeat."""

    async def park(self, name: str, change: Change, error: str, attempts: int) -> None:
        """Keep ``change`` as failed (replacing an earlier record of the same revision)."""

    async def unpark(self, name: str, revision: int) -> None:
        """Forget a parked change (its retry succeeded)."""

    async def take_retries(self, name: str, limit: int) -> list[Parked]:
        """Parked changes asked to be retried (their flag is cleared)."""

    async def request_retry(self, name: str) -> int:
        """Flag every parked change of ``name`` for a retry; return how many."""

    async def status(self) -> list[TriggerStatus]:
        """Every registered trigger, by name."""


def check_trigger_args(
    name: object,
    scope: object,
    key: object,
    events: object,
    start: object,
    concurrency: object,
    max_attempts: object,
    lease: object,
) -> frozenset[str] | None:
    """StateValueError for a bad ``on_change`` argument; the events as a frozenset (None = all)."""
    from .values import check_name

    if not isinstance(name, str) or not name or "\0" in name:
        raise StateValueError(f"a trigger name must be a non-empty str without NUL, got {name!r}")
    if scope is not None:
        check_name("scope", scope)
    if key is not None:
        if scope is None:
            raise StateValueError("on_change(key=...) follows one key of one scope: pass the scope as well")
        check_name("key", key)
    chosen: frozenset[str] | None = None
    if events is not None:
        items = (events,) if isinstance(events, str) else tuple(events)  # type: ignore[arg-type]
        names = {e.removeprefix("state:") if isinstance(e, str) else e for e in items}
        bad = sorted(str(e) for e in names if e not in EVENTS)
        if bad or not names:
            raise StateValueError(f"events must be some of {', '.join(EVENTS)}, got {events!r}")
        chosen = frozenset(str(e) for e in names)
    if start not in ("now", "beginning"):
        raise StateValueError(f'start must be "now" or "beginning", got {start!r}')
    for label, value in (("concurrency", concurrency), ("max_attempts", max_attempts)):
        if type(value) is not int or value < 1:
            raise StateValueError(f"{label} must be an int >= 1, got {value!r}")
    if not isinstance(lease, int | float) or type(lease) is bool or not math.isfinite(lease) or lease <= 0:
        raise StateValueError(f"lease must be a number of seconds > 0, got {lease!r}")
    return chosen


def worker_id() -> str:
    """This process's name in the store: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# --- the engine ------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """A held partition, as this worker tracks it."""

    position: int
    done: set[int]
    inflight: set[int] = field(default_factory=set)
    handled: int = 0
    skipped: int = 0
    dirty: bool = False
    #: Taken while the reader was past its position: its changes are read again before any is handled.
    fresh: bool = False
    #: Beyond this worker's share: no new change is taken, and once the ones in flight are done and
    #: committed up to ``frozen`` (the read position when draining began) it is given back.
    draining: bool = False
    frozen: int = 0


class TriggerRun:
    """One trigger running in this process: reader, per-key handler tasks, committer, lease keeper."""

    def __init__(self, manager: TriggerOwner, trigger: Trigger, owner: str, store: TriggerStore) -> None:
        self.manager = manager
        self.trigger = trigger
        self.owner = owner
        self.store = store
        self._parts: dict[int, _Part] = {}
        self._read_upto = 0  # every change at or below it, of a held partition, has been seen
        self._keys: dict[tuple[str, str], deque[tuple[Change, Parked | None]]] = {}
        self._key_tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(trigger.concurrency)
        self._space = asyncio.Event()
        self._space.set()
        self._queued = 0
        self._stopping = asyncio.Event()
        self._restart = asyncio.Event()  # the held partitions changed: read again from their lowest position
        self._committed = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self.finished = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Until stop(): hold partitions, read, handle; then finish in-flight work (GRACE) and give back."""
        try:
            await self._run()
        finally:
            self.finished.set()

    async def _run(self) -> None:
        adapter = await self.manager._connected_adapter()
        start = await self._start_revision(adapter)
        await self.store.register(self.trigger.name, start, PARTITIONS)
        await self._rebalance()
        helpers = [
            asyncio.ensure_future(self._keep_leases()),
            asyncio.ensure_future(self._commit_loop()),
        ]
        try:
            await self._read_loop()
        finally:
            self._stopping.set()
            await self._finish_in_flight()
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await self._commit_all()
            with contextlib.suppress(Exception):
                await self.store.release(self.trigger.name, self.owner)

    def stop(self) -> None:
        """Ask the run to end (it finishes in-flight handlers first, up to GRACE seconds)."""
        self._stopping.set()
        self._restart.set()
        self._space.set()

    async def _start_revision(self, adapter: Any) -> int:
        # Revisions of one scope only, on a store whose revisions are per scope (a Redis Cluster, where a
        # trigger always has a scope).
        scope = self.trigger.scope if getattr(adapter, "revisions_per_scope", False) else None
        if self.trigger.start == "now":
            return int(await adapter.revision(scope))
        try:
            await adapter.changes_after(scope, None, 0, 1, 0.0)
        except ChangesCompactedError as exc:
            return exc.oldest - 1
        return 0

    async def _finish_in_flight(self) -> None:
        pending = {t for t in self._key_tasks if not t.done()}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=GRACE)
        for task in late:
            task.cancel()
        if late:
            log.warning(
                "trigger %s: %d handler(s) still running after %.0f s at shutdown; their changes will be handled again",
                self.trigger.name,
                len(late),
                GRACE,
            )
            await asyncio.wait(late, timeout=1.0)

    # --- partitions ----------------------------------------------------------------------------

    async def _rebalance(self) -> None:
        claims = await self.store.acquire(self.trigger.name, self.owner, self.trigger.lease)
        held = {c.partition for c in claims}
        lowered = False
        idle_surplus = []
        for c in claims:
            part = self._parts.get(c.partition)
            # New to us, or moved on by another holder while we had lost it: start from what is recorded.
            if part is None or c.position > part.position:
                if c.surplus:
                    idle_surplus.append(c.partition)  # nothing of it in flight here: give it back at once
                    continue
                fresh = c.position < self._read_upto
                self._parts[c.partition] = _Part(c.position, set(c.done), fresh=fresh)
                lowered = lowered or fresh
            elif c.surplus and not part.draining:
                part.draining, part.frozen = True, self._watermark(part)
        if idle_surplus:
            await self.store.release(self.trigger.name, self.owner, idle_surplus)
        for p in [p for p in self._parts if p not in held]:
            del self._parts[p]  # given back or lost: its in-flight changes are no longer ours to commit
        if lowered:
            self._restart.set()

    async def _keep_leases(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.trigger.lease / 3)
            try:
                await self._commit_all()  # what is done is recorded before any partition changes hands
                await self._rebalance()
            except StateBackendError as exc:
                log.warning("trigger %s: cannot renew leases (%s); retrying", self.trigger.name, exc)

    # --- reading -------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while not self._stopping.is_set():
            if not self._parts:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.trigger.lease / 3):
                        await self._restart.wait()
                self._restart.clear()
                continue
            self._restart.clear()
            since = min(p.position for p in self._parts.values())
            self._read_upto = since
            for part in self._parts.values():
                part.fresh = False
            try:
                await self._follow(since)
            except ChangesCompactedError as exc:
                log.warning(
                    "trigger %s: changes up to %d were compacted before being handled; going on from there",
                    self.trigger.name,
                    exc.oldest - 1,
                )
                for part in self._parts.values():
                    if part.position < exc.oldest - 1:
                        part.position, part.dirty = exc.oldest - 1, True

    async def _follow(self, since: int) -> None:
        trig = self.trigger
        watch = self.manager.watch(trig.scope, key=trig.key, since=since)
        watch.traced = False  # each handler attempt has its span instead
        async with watch as changes:
            restart = asyncio.ensure_future(self._restart.wait())
            nxt: asyncio.Future[Change] | None = None
            try:
                while not self._restart.is_set():
                    await self._space.wait()
                    nxt = asyncio.ensure_future(anext(changes))
                    done, _ = await asyncio.wait({nxt, restart}, return_when=asyncio.FIRST_COMPLETED)
                    if nxt not in done:
                        return
                    try:
                        change = nxt.result()
                    except StopAsyncIteration:
                        self.stop()  # the store was closed
                        return
                    finally:
                        nxt = None
                    self._take(change)
            finally:
                restart.cancel()
                if nxt is not None:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt

    def _take(self, change: Change) -> None:
        self._read_upto = change.revision
        part = self._parts.get(partition_of(change.scope, change.key))
        if part is None or part.fresh or part.draining:
            return
        if change.revision <= part.position or change.revision in part.done:
            return
        try:
            wanted = self.trigger.matches(change)
        except Exception as exc:  # a condition that raises rejects the change, loudly
            log.warning(
                "trigger %s: condition raised %r on revision %d: skipped", self.trigger.name, exc, change.revision
            )
            wanted = False
        if not wanted:
            part.done.add(change.revision)
            part.skipped += 1
            part.dirty = True
            return
        part.inflight.add(change.revision)
        self._enqueue(change, None)

    def _enqueue(self, change: Change, parked: Parked | None) -> None:
        ident = (change.scope, change.key)
        queue = self._keys.get(ident)
        self._queued += 1
        if self._queued >= BACKLOG:
            self._space.clear()
        if queue is not None:
            queue.append((change, parked))
            return
        self._keys[ident] = deque([(change, parked)])
        task = asyncio.ensure_future(self._drain(ident))
        self._key_tasks.add(task)
        task.add_done_callback(self._key_tasks.discard)

    # --- handling ------------------------------------------------------------------------------

    async def _drain(self, ident: tuple[str, str]) -> None:
        queue = self._keys[ident]
        try:
            while queue:
                change, parked = queue[0]
                async with self._slots:
                    ok, error, attempts = await self._attempts(change)
                queue.popleft()
                self._queued -= 1
                if self._queued < BACKLOG:
                    self._space.set()
                await self._finished(change, parked, ok, error, attempts)
        finally:
            if self._keys.get(ident) is queue:
                del self._keys[ident]

    async def _attempts(self, change: Change) -> tuple[bool, str, int]:
        trig = self.trigger
        attempts = 0
        while True:
            attempts += 1
            try:
                tel = current_telemetry()
                span = None if tel is None else tel.handling(self.manager._telemetry, trig.name, change, attempts)
                await run_handler(span, trig.handler, change)
                return True, "", attempts
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if attempts >= trig.max_attempts:
                    log.warning(
                        "trigger %s: revision %d (%s/%s) failed %d times, parked: %s",
                        trig.name,
                        change.revision,
                        change.scope,
                        change.key,
                        attempts,
                        error,
                    )
                    return False, error, attempts
                delay = min(MAX_BACKOFF, 2.0 ** (attempts - 1))
                log.warning(
                    "trigger %s: revision %d failed (attempt %d of %d), retrying in %.0f s: %s",
                    trig.name,
                    change.revision,
                    attempts,
                    trig.max_attempts,
                    delay,
                    error,
                )
                await asyncio.sleep(delay)

    async def _persist(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run a store call, again and again while the store is away (a parked change must not be lost)."""
        while True:
            try:
                await work()
                return
            except StateBackendError as exc:
                log.warning("trigger %s: cannot record a parked change (%s); retrying", self.trigger.name, exc)
                await asyncio.sleep(1.0)

    async def _finished(self, change: Change, parked: Parked | None, ok: bool, error: str, attempts: int) -> None:
        name = self.trigger.name
        if parked is not None:  # a retry asked for with `motia-state triggers retry`
            if ok:
                await self._persist(lambda: self.store.unpark(name, change.revision))
            else:
                await self._persist(lambda: self.store.park(name, change, error, parked.attempts + attempts))
            return
        if not ok:
            await self._persist(lambda: self.store.park(name, change, error, attempts))
            if (tel := current_telemetry()) is not None:
                tel.count_parked(self.manager._telemetry, name)
        part = self._parts.get(partition_of(change.scope, change.key))
        if part is None or change.revision not in part.inflight:
            return  # the partition was lost meanwhile: its new holder handles the change again
        part.inflight.discard(change.revision)
        part.done.add(change.revision)
        part.handled += ok
        part.dirty = True
        self._committed.set()

    # --- committing ----------------------------------------------------------------------------

    def _watermark(self, part: _Part) -> int:
        if part.fresh:
            return part.position
        upto = min(part.inflight) - 1 if part.inflight else self._read_upto
        if part.draining:
            upto = min(upto, part.frozen)  # what came after draining began is the next holder's
        return max(part.position, upto)

    async def _commit_all(self) -> None:
        # One at a time: the commit loop, the lease keeper and shutdown all commit.
        async with self._commit_lock:
            await self._commit_unlocked()
            drained = [
                p
                for p, part in self._parts.items()
                if part.draining and not part.inflight and not part.dirty and self._watermark(part) == part.position
            ]
            if drained:
                await self.store.release(self.trigger.name, self.owner, drained)
                for p in drained:
                    self._parts.pop(p, None)

    async def _commit_unlocked(self) -> None:
        for p, part in list(self._parts.items()):
            mark = self._watermark(part)
            if not part.dirty and mark == part.position:
                continue
            done = sorted(r for r in part.done if r > mark)
            handled, skipped = part.handled, part.skipped
            part.dirty = False
            try:
                ok = await self.store.commit(
                    self.trigger.name, self.owner, p, mark, done, handled, skipped, self.trigger.lease
                )
            except BaseException:
                part.dirty = True  # not known to be recorded: send it again next time
                raise
            if not ok:
                if self._parts.get(p) is part:
                    del self._parts[p]
                continue
            part.handled -= handled
            part.skipped -= skipped
            part.position = max(part.position, mark)
            # Handlers may have finished while the commit was on its way: keep what they added.
            part.done = {r for r in part.done if r > part.position}

    async def _commit_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._committed.wait()
            self._committed.clear()
            try:
                await self._commit_all()
                for parked in await self.store.take_retries(self.trigger.name, 100):
                    self._enqueue(parked.change, parked)
            except StateBackendError as exc:
                log.warning("trigger %s: cannot record progress (%s); retrying", self.trigger.name, exc)
                await asyncio.sleep(TICK)


async def run_all(manager: TriggerOwner, triggers: Iterable[Trigger]) -> None:
    """Run ``triggers`` until cancelled or the manager is closed (SPEC §11)."""
    adapter = await manager._connected_adapter()
    factory = getattr(adapter, "trigger_store", None)
    if factory is None:
        raise NotImplementedError(f"{type(adapter).__name__} keeps no trigger progress: add trigger_store()")
    store: TriggerStore = factory()
    owner = worker_id()
    runs = [TriggerRun(manager, t, owner, store) for t in triggers]
    manager._trigger_runs.update(runs)
    tasks = [asyncio.ensure_future(r.run()) for r in runs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:  # cancelled, or one run failed: the others stop too, finishing their handlers
        for r in runs:
            r.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        manager._trigger_runs.difference_update(runs)


# --- the in-process store (memory backend) ---------------------------------------------------------------


@dataclass(eq=False)
class _MemPart:
    position: int
    done: tuple[int, ...] = ()
    owner: str | None = None
    until: float = 0.0


@dataclass
class _MemTrigger:
    start: int
    parts: list[_MemPart]
    handled: int = 0
    skipped: int = 0
    heartbeats: dict[str, float] = field(default_factory=dict)
    parked: dict[int, Parked] = field(default_factory=dict)


class MemoryTriggerStore:
    """Trigger progress kept in this process (memory backend): the reference for the other stores."""

    def __init__(self) -> None:
        self._triggers: dict[str, _MemTrigger] = {}

    async def register(self, name: str, start: int, partitions: int) -> int:
        found = self._triggers.get(name)
        if found is None:
            found = self._triggers[name] = _MemTrigger(start, [_MemPart(start) for _ in range(partitions)])
        return found.start

    async def acquire(self, name: str, owner: str, lease: float) -> list[Claim]:
        trig = self._triggers[name]
        now = time.time()
        trig.heartbeats[owner] = now + lease
        for who, until in list(trig.heartbeats.items()):
            if until <= now:
                del trig.heartbeats[who]
        share = math.ceil(len(trig.parts) / len(trig.heartbeats))
        mine = [i for i, p in enumerate(trig.parts) if p.owner == owner and p.until > now]
        surplus = set(mine[share:])
        for i, part in enumerate(trig.parts):
            if len(mine) >= share:
                break
            if part.owner is None or part.until <= now:
                part.owner = owner
                mine.append(i)
        for i in mine:
            trig.parts[i].until = now + lease
        return [
            Claim(i, trig.parts[i].position, frozenset(trig.parts[i].done), surplus=i in surplus) for i in sorted(mine)
        ]

    async def commit(
        self,
        name: str,
        owner: str,
        partition: int,
        position: int,
        done: Sequence[int],
        handled: int,
        skipped: int,
        lease: float,
    ) -> bool:
        trig = self._triggers[name]
        part = trig.parts[partition]
        now = time.time()
        if part.owner != owner or part.until <= now:
            return False
        part.position, part.done, part.until = position, tuple(done), now + lease
        trig.handled += handled
        trig.skipped += skipped
        return True

    async def release(self, name: str, owner: str, partitions: Sequence[int] | None = None) -> None:
        trig = self._triggers.get(name)
        if trig is None:
            return
        if partitions is None:
            trig.heartbeats.pop(owner, None)
        only = None if partitions is None else set(partitions)
        for i, part in enumerate(trig.parts):
            if part.owner == owner and (only is None or i in only):
                part.owner, part.until = None, 0.0

    async def park(self, name: str, change: Change, error: str, attempts: int) -> None:
        self._triggers[name].parked[change.revision] = Parked(
            name, change, error, attempts, utc_from_epoch(time.time())
        )

    async def unpark(self, name: str, revision: int) -> None:
        self._triggers[name].parked.pop(revision, None)

    async def take_retries(self, name: str, limit: int) -> list[Parked]:
        parked = self._triggers[name].parked
        taken = [p for p in parked.values() if p.retry][:limit]
        for p in taken:
            parked[p.change.revision] = Parked(p.trigger, p.change, p.error, p.attempts, p.parked_at, False)
        return taken

    async def request_retry(self, name: str) -> int:
        trig = self._triggers.get(name)
        if trig is None:
            return 0
        for rev, p in list(trig.parked.items()):
            trig.parked[rev] = Parked(p.trigger, p.change, p.error, p.attempts, p.parked_at, True)
        return len(trig.parked)

    async def status(self) -> list[TriggerStatus]:
        now = time.time()
        return [
            TriggerStatus(
                name,
                t.start,
                tuple(p.position for p in t.parts),
                t.handled,
                t.skipped,
                tuple(sorted(w for w, until in t.heartbeats.items() if until > now)),
                tuple(t.parked[r] for r in sorted(t.parked)),
            )
            for name, t in sorted(self._triggers.items())
        ]
