"""The wake-up of the Postgres change feed: one ``LISTEN`` connection per adapter, or one poller.

The change trigger runs ``pg_notify`` at each commit that recorded changes (``sql/feed.py``). Every waiting
reader of the adapter shares this one connection: a notification bumps a generation counter and wakes them.
A reader takes the generation *before* it reads, then waits only if it is unchanged, so a commit landing
between its read and its wait is never slept through. The connection is the adapter's own, outside the
pool (a pooled connection is reset and shared; LISTEN is session state).

Behind a transaction pooler LISTEN cannot work (the session it belongs to is lent to others between
statements): the connection then goes to ``listen_url`` (a direct one), or, without one, the :class:`Poller`
takes its place: one cheap query of the newest revision every ``POLL_INTERVAL`` seconds on the pool, only
while some reader waits, bumping the same generation counter when it moves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

from .connection import DRIVER_ERRORS

__all__ = ["POLL", "POLL_INTERVAL", "Listener", "Poller"]

#: Seconds between reads while the LISTEN connection is down: a change still arrives well within 1 s.
POLL: Final = 0.25
#: Seconds between two revision reads of the Poller (a change is seen ~POLL_INTERVAL/2 after its commit).
POLL_INTERVAL: Final = 0.1
# Seconds the Poller keeps going after the last reader waited: then it stops querying.
_POLL_IDLE: Final = 5.0
# Seconds between attempts to open the LISTEN connection after one failed (readers poll meanwhile).
_RETRY_AFTER: Final = 1.0


class _Wakeups:
    """A generation counter and the waiters to wake when it moves (the Listener's and the Poller's)."""

    def __init__(self) -> None:
        self.generation = 0
        self._wake: asyncio.Event | None = None

    def _notify_all(self) -> None:
        self.generation += 1
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.set()

    async def _sleep(self, generation: int, within: float) -> None:
        """Until the generation moves past ``generation`` (at once if it has), or ``within`` seconds."""
        if self.generation != generation or within <= 0:
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        wake = self._wake
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await wake.wait()


class Listener(_Wakeups):
    """The LISTEN connection (opened on the first wait), its generation counter and the waiters to wake."""

    def __init__(
        self, open_connection: Callable[[], Awaitable[Any]], close_timeout: float, channel: str = "motia_state_changes"
    ) -> None:
        super().__init__()
        self._open = open_connection
        self._channel = channel
        self._close_timeout = close_timeout
        self.conn: Any = None
        self._connecting: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._closed = False

    def listening(self) -> bool:
        """True when the LISTEN connection is up; else start opening it (in the background) and return False.

        Opening in the background: a reader never waits a connect timeout for its wake-up; it polls
        (every POLL seconds) until the connection is up, so nothing is missed in between.
        """
        conn = self.conn
        if conn is not None and not conn.is_closed():
            return True
        self.conn = None
        if self._closed or self._connecting is not None:
            return False
        if asyncio.get_running_loop().time() >= self._retry_at:
            self._connecting = asyncio.ensure_future(self._connect())
        return False

    async def _connect(self) -> None:
        conn: Any = None
        try:
            conn = await self._open()
            conn.add_termination_listener(self._lost)
            await conn.add_listener(self._channel, self._notified)
        except BaseException as exc:
            # Not fatal: readers poll, and the next wait after _RETRY_AFTER tries again. The read itself
            # (on the pool, its errors translated) reports a server that is really gone.
            self._retry_at = asyncio.get_running_loop().time() + _RETRY_AFTER
            if conn is not None:
                conn.terminate()
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._connecting = None
        if self._closed:
            conn.terminate()
            return
        self.conn = conn
        # Commits made before the LISTEN took effect sent no wake-up this connection saw: readers that
        # were polling read again at once.
        self._notify_all()

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._notify_all()

    def _lost(self, conn: Any) -> None:
        if self.conn is conn:
            self.conn = None
        # Waiters go back to reading (and polling) instead of sleeping through a wake-up that cannot come.
        self._notify_all()

    async def wait(self, generation: int, within: float) -> None:
        """Return at the next notification (at once if one came since ``generation``), or after ``within`` seconds."""
        await self._sleep(generation, within)

    async def close(self) -> None:
        """Close the LISTEN connection (cut it if it does not close in time). No reopening after this."""
        self._closed = True
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            async with asyncio.timeout(self._close_timeout):
                await conn.close()
        except (TimeoutError, RuntimeError, *DRIVER_ERRORS):
            # RuntimeError: a connection of another (closed) event loop cannot be closed from this one.
            conn.terminate()


class Poller(_Wakeups):
    """The Listener's stand-in behind a transaction pooler without ``listen_url``: it polls the revision."""

    def __init__(self, read_revision: Callable[[], Awaitable[int]], interval: float = POLL_INTERVAL) -> None:
        super().__init__()
        self._read = read_revision
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._up = False
        self._waiting = 0
        self._last_wait = 0.0
        self._retry_at = 0.0
        self._closed = False

    def listening(self) -> bool:
        """True when the poller runs (a commit then bumps the generation); else start it and return False."""
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        self._last_wait = loop.time()
        if (self._task is None or self._task.done()) and loop.time() >= self._retry_at:
            self._up = False
            self._task = asyncio.ensure_future(self._run())
        return self._up

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last: int | None = None
        try:
            while not self._closed:
                try:
                    revision = await self._read()
                except Exception:
                    # The readers' own reads report a server that is gone; they poll meanwhile.
                    self._retry_at = loop.time() + _RETRY_AFTER
                    return
                if revision != last:
                    # The first read too: a commit between a reader's read and this one must wake it.
                    self._notify_all()
                last, self._up = revision, True
                if not self._waiting and loop.time() - self._last_wait > _POLL_IDLE:
                    return  # nobody waits: stop querying until the next wait
                await asyncio.sleep(self._interval)
        finally:
            self._up = False
            # Waiters go back to reading instead of sleeping through a wake-up that cannot come.
            self._notify_all()

    async def wait(self, generation: int, within: float) -> None:
        """Return at the next revision seen (at once if one came since ``generation``), or after ``within`` s."""
        if self.generation != generation or within <= 0:
            return
        self._waiting += 1
        try:
            await self._sleep(generation, within)
        finally:
            self._waiting -= 1
            self._last_wait = asyncio.get_running_loop().time()

    async def close(self) -> None:
        """Stop polling. No restarting after this."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
