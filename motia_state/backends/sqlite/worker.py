"""The SQLite backend's machinery: one thread owning the sqlite3 connection, and the batches sent to it.

Every operation is one hop into the thread, which runs the whole transaction there (``BEGIN IMMEDIATE`` +
statements + ``COMMIT`` in one function call). Operations queued while the thread is busy go together as
the next batch: one hop and one transaction for all of them, so many concurrent tasks cost less per
operation than one. Inside a batch, consecutive sets run as one (``operations.MERGED``) and identical
reads with no write between them read once (``operations.SHARED``, answered as a SharedText).

The change feed's waits live here too: a watch with nothing to read waits for the next answered write batch
(this process's commits) or for ``PRAGMA data_version`` to move (another connection committed), which one
poller looks at every POLL_EVERY seconds while anybody waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from ...errors import StateBackendError
from ...sql import TABLE_NAME, VERSION_TABLE
from ...sql.connect import make_sqlite_folder
from ...urls import StoreURL
from ...values import SharedText
from .operations import MERGED, SHARED, op_data_version, rollback, ts

__all__ = ["OWN", "READ", "WRITE", "Database", "SharedText"]

# Job kinds: plain read, write inside the batch transaction, job running its own transactions.
READ, WRITE, OWN = 0, 1, 2
# One batch in flight: whatever arrives meanwhile becomes the next batch. (Two in flight pipelines better on
# an idle machine but halves the batches; under the GIL the bigger batches won in measurements.)
_MAX_IN_FLIGHT: Final = 1

#: Seconds between two looks at ``PRAGMA data_version`` while a watch waits: how a commit made by another
#: process (or another connection) is noticed. Only while someone waits: an idle store runs no timer.
POLL_EVERY: Final = 0.1

_Job = tuple[Callable[..., Any], tuple[Any, ...], int, "asyncio.Future[Any]"]


def _wake(fut: asyncio.Future[None]) -> None:
    """Resolve a waiter's future from its own loop's thread, whichever loop or thread calls this."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    loop = fut.get_loop()
    if loop is running:
        _resolve(fut)
    else:
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Waiter:
    """A reader waiting for a change: its future and the data_version its last read saw."""

    __slots__ = ("fut", "version")

    def __init__(self, fut: asyncio.Future[None], version: int) -> None:
        self.fut, self.version = fut, version


class _Worker:
    """One thread owning the sqlite3 connection. Jobs arrive on a SimpleQueue; each answer goes back to the
    event loop with one ``call_soon_threadsafe`` (leaner than an executor's future chain: one loop turn less).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Post | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="motia-state-sqlite", daemon=True)
        self._thread.start()

    def post(self, fn: Callable[[], Any], reply: Callable[[bool, Any], None], loop: asyncio.AbstractEventLoop) -> None:
        self._jobs.put((fn, reply, loop))

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, reply, loop = job
            try:
                ok, result = True, fn()
            except Exception as exc:
                ok, result = False, exc
            # RuntimeError: that event loop is closed, nobody waits for this answer any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(reply, ok, result)

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the worker thread and wait for its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def reply(ok: bool, result: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(result)
            else:
                fut.set_exception(result)

        self.post(fn, reply, loop)
        return await fut

    def stop(self) -> None:
        """Let the thread end once the jobs already queued are done."""
        self._jobs.put(None)


_Post = tuple[Callable[[], Any], Callable[[bool, Any], None], asyncio.AbstractEventLoop]


class Database:
    """The connection (owned by its worker thread) and the queue of operations batched onto it."""

    def __init__(self, url: StoreURL, path: str | None, *, migrate: str, busy_timeout: float) -> None:
        self.url = url
        self.path = path  # None = :memory:
        self.migrate = migrate
        self.busy_timeout = busy_timeout
        self._worker: _Worker | None = None
        self._conn: sqlite3.Connection | None = None
        self._queue: list[_Job] = []
        self._in_flight = 0  # batches sent to the worker and not yet answered
        self._flush_pending = False  # a _flush is scheduled: new operations wait for it
        self._flight_loop: asyncio.AbstractEventLoop | None = None
        # The change feed's wake-ups: ``generation`` counts the answered batches that may have committed a
        # write (this process's commits); the poller watches data_version (everybody else's).
        self.generation = 0
        self._waiters: set[_Waiter] = set()
        self._poller: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection is open."""
        return self._worker is not None

    async def open(self) -> None:
        """Open the file (creating it and its folder) in WAL mode, or a private in-memory database."""
        worker = _Worker()
        try:
            self._conn = await worker.run(self._open)
        except BaseException:
            worker.stop()
            raise
        self._worker = worker

    async def schema_version(self) -> str | None:
        """The Alembic revision stored in the file (None when there is none)."""
        assert self._worker is not None
        return await self._worker.run(self._read_version)  # type: ignore[no-any-return]

    def _read_version(self) -> str | None:
        assert self._conn is not None
        try:
            rows = self._conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        except sqlite3.OperationalError:
            return None  # no version table yet
        return str(rows[0][0]) if len(rows) == 1 else None

    def _open(self) -> sqlite3.Connection:
        """Runs in the worker thread, which then owns the connection."""
        try:
            if self.path is None:
                return self._open_memory()
            make_sqlite_folder(self.url, self.path)
            conn = self._connect_file(self.path, uri=False)
            try:
                # WAL lets readers and one writer share the file across processes; NORMAL is durable
                # across application crashes and only fsyncs at checkpoints.
                self._use_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
            except BaseException:
                conn.close()
                raise
            return conn
        except sqlite3.Error as exc:
            raise self.wrap(exc) from exc

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode (a lasting property of the file, so usually already done).

        Switching needs every other connection out of the way, and SQLite reports BUSY for it without
        waiting on busy_timeout: when many processes open a brand-new file at once, retry until it is.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                    return
                # A refused switch may also just answer with the old mode.
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() == "wal":
                    return
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked: could not switch the file to WAL mode")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.01 + random.random() * 0.04)

    def _connect_file(self, target: str, *, uri: bool) -> sqlite3.Connection:
        # isolation_level=None: we write BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(
            target,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
            uri=uri,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _open_memory(self) -> sqlite3.Connection:
        # A named in-memory database lives as long as our connection; Alembic migrates it through a second,
        # short-lived connection to the same name.
        name = f"file:motia-state-{os.urandom(16).hex()}?mode=memory&cache=shared"
        conn = self._connect_file(name, uri=True)
        if self.migrate != "off":
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            from ...sql.migrate import upgrade_connection

            engine = create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(name, uri=True, check_same_thread=False),
                poolclass=NullPool,
            )
            try:
                with engine.begin() as sa_conn:
                    upgrade_connection(sa_conn)
            finally:
                engine.dispose()
        return conn

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent; ``open`` may follow."""
        worker, self._worker = self._worker, None
        conn, self._conn = self._conn, None
        if worker is None:
            return
        try:
            if conn is not None:
                await worker.run(conn.close)
        finally:
            worker.stop()

    def wrap(self, exc: sqlite3.Error) -> StateBackendError:
        """A sqlite3 error as StateBackendError, with what to do where we know it."""
        reason = str(exc) or type(exc).__name__
        hint = ""
        if "unable to open database file" in reason:
            hint = (
                f"; check that the folder of {self.path!r} exists and is writable by this process "
                "(or point the sqlite URL elsewhere)"
            )
        elif "readonly" in reason:
            hint = f"; the database file {self.path!r} or its folder is read-only: make both writable"
        elif "database is locked" in reason or "database is busy" in reason:
            hint = (
                f"; another process held the write lock longer than busy_timeout ({self.busy_timeout}s): "
                "raise busy_timeout or shorten the other writer's transactions"
            )
        elif f"no such table: {TABLE_NAME}" in reason:
            hint = "; the schema is missing: run `motia-state migrate` (or use migrate: auto)"
        return StateBackendError(f"{type(exc).__name__}: {reason}{hint}", backend="sqlite", url=self.url.masked)

    async def call(self, kind: int, fn: Callable[..., Any], *args: Any) -> Any:
        """Queue ``fn(conn, now, *args)`` for the next batch and wait for its result."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((fn, args, kind, fut))
        # A batch in flight on another (maybe closed) loop never calls back here: don't wait for it. Sending
        # more batches is always safe, the single worker thread runs them one after the other.
        if self._flight_loop is not loop:
            self._in_flight = 0
            self._flush_pending = False
            self._flight_loop = loop
        if not self._flush_pending and self._in_flight < _MAX_IN_FLIGHT:
            self._dispatch(loop)
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        worker = self._worker
        if worker is None:
            for _, _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(StateBackendError("the store was closed", backend="sqlite", url=self.url.masked))
            return
        self._in_flight += 1
        worker.post(lambda: self._run_batch(batch), lambda ok, results: self._finish(batch, loop, ok, results), loop)

    def _finish(self, batch: list[_Job], loop: asyncio.AbstractEventLoop, ok: bool, answer: Any) -> None:
        if self._flight_loop is loop:
            self._in_flight -= 1
        exc: BaseException | None = None if ok else answer
        results: list[tuple[bool, Any]] | None = answer if ok else None
        for i, (_, _, _, fut) in enumerate(batch):
            if fut.done():
                continue
            if results is None:
                assert exc is not None
                fut.set_exception(exc)
            else:
                ok, value = results[i]
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
        if any(job[2] != READ for job in batch):
            self._committed()
        # The tasks just answered run next in this loop turn and most queue their next operation right away:
        # send the queue after them, as one batch, rather than the first of them alone.
        if not self._flush_pending:
            self._flush_pending = True
            loop.call_soon(self._flush, loop)

    # --- waiting for changes --------------------------------------------------------------------------

    def _committed(self) -> None:
        # A failed batch wakes them too: a waiter only reads again, so a spurious wake-up costs one read.
        self.generation += 1
        for waiter in list(self._waiters):
            _wake(waiter.fut)

    async def wait_for_change(self, generation: int, version: int, within: float) -> None:
        """Return once a write may have been committed since the reader took ``generation`` (this process)
        or since its read saw data_version ``version`` (other connections), or after ``within`` seconds.
        """
        if self.generation != generation or within <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), version)
        self._waiters.add(waiter)
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll())
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await waiter.fut
        finally:
            self._waiters.discard(waiter)

    async def _poll(self) -> None:
        """Look at data_version every POLL_EVERY seconds while this loop has waiters; wake those whose read
        saw another value (another connection committed since).
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(POLL_EVERY)
            mine = [w for w in self._waiters if w.fut.get_loop() is loop]
            if not mine:
                return  # no await since the check: a waiter added after this starts a new poller
            if self._worker is None:
                continue  # closed: the waiters end with their streams or time out
            try:
                version = await self.call(READ, op_data_version)
            except Exception:
                continue  # a failing look is retried at the next tick; the waiters also time out
            for waiter in mine:
                if waiter.version != version:
                    _wake(waiter.fut)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_pending = False
        if self._queue and (self._in_flight < _MAX_IN_FLIGHT or self._flight_loop is not loop):
            self._dispatch(loop)

    def _run_batch(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Worker thread: run the batch; a job with its own transactions (cleanup) runs between two segments."""
        if len(batch) == 1 or all(job[2] != OWN for job in batch):
            return self._run_segment(batch)
        results: list[tuple[bool, Any]] = []
        segment: list[_Job] = []
        for job in batch:
            if job[2] == OWN:
                results += self._run_segment(segment) if segment else []
                results += self._run_segment([job])
                segment = []
            else:
                segment.append(job)
        return results + (self._run_segment(segment) if segment else [])

    def _run_segment(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one write transaction (opened only if something writes)."""
        conn = self._conn
        if conn is None:
            err = StateBackendError("the store was closed", backend="sqlite", url=self.url.masked)
            return [(False, err)] * len(batch)
        now = ts(time.time())
        results: list[tuple[bool, Any]] = []
        # Answers of SHARED reads since the last write of this segment: an identical read is answered from here.
        shared: dict[tuple[Any, ...], int] = {}  # read -> index of its answer in results
        n, i = len(batch), 0
        try:
            while i < n:
                fn, args, kind, _ = batch[i]
                if kind == WRITE and not conn.in_transaction:
                    conn.execute("BEGIN IMMEDIATE")
                if kind != READ:
                    shared.clear()
                    many = MERGED.get(fn)
                    if many is not None and i + 1 < n and batch[i + 1][0] is fn:
                        end = i + 2
                        while end < n and batch[end][0] is fn:
                            end += 1
                        results += many(conn, now, [job[1] for job in batch[i:end]])
                        i = end
                        continue
                elif fn in SHARED:
                    first = shared.get((fn, *args))
                    if first is None:
                        shared[(fn, *args)] = len(results)
                        results.append((True, fn(conn, now, *args)))
                    else:
                        answer = results[first][1]
                        if answer is not None and type(answer) is not SharedText:
                            answer = SharedText(answer)
                            results[first] = (True, answer)
                        results.append((True, answer))
                    i += 1
                    continue
                try:
                    results.append((True, fn(conn, now, *args)))
                except (sqlite3.Error, StateBackendError):
                    raise
                except Exception as exc:  # e.g. UpdateOpError from apply(): that op wrote nothing
                    results.append((False, exc))
                i += 1
            if conn.in_transaction:
                conn.execute("COMMIT")
        except (sqlite3.Error, StateBackendError) as exc:
            rollback(conn)
            busy = isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))
            if len(batch) > 1 and not busy:
                # Re-run one by one so that only the operation that fails reports the error.
                return [self._run_segment([job])[0] for job in batch]
            # Busy after busy_timeout: every operation of the batch waited for the same lock; retrying them one
            # by one would only multiply the wait.
            return [(False, self.wrap(exc) if isinstance(exc, sqlite3.Error) else exc)] * len(batch)
        return results
