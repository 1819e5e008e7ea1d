"""The change feed (SPEC §10): :class:`Change`, the :class:`ChangeStream` a ``watch()`` returns, and the
in-process :class:`ChangeLog` the memory backend keeps.

A stream is built on one adapter hook, ``changes_after(scope, key, after, limit, wait)``: the committed
changes after a revision, waiting up to ``wait`` seconds when there are none. The stream remembers the last
revision it delivered and asks for what comes after it, so a cancelled wait, a reconnect or a resumed
watch (``since=``) never loses nor repeats a change: exactly-once rests on the backend's revisions alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, Protocol, Self

from .errors import ChangesCompactedError, StateBackendError
from .telemetry import Described
from .telemetry import current as current_telemetry
from .values import decode

__all__ = ["EVENTS", "Change", "ChangeLog", "ChangeStream", "Event"]

_log = logging.getLogger("motia_state")

Event = Literal["created", "updated", "deleted", "expired"]
EVENTS: Final[tuple[Event, ...]] = ("created", "updated", "deleted", "expired")

#: Seconds a recorded change is kept at least, unless ``changes_retention`` says otherwise (SPEC §10).
DEFAULT_RETENTION: Final = 86400.0
#: Changes read per round trip by a stream.
BATCH: Final = 500
#: Seconds one wait for new changes may last before the stream asks again (a watch that nobody reads
#: any more holds nothing longer than this).
WAIT: Final = 5.0
#: Seconds a stream keeps reconnecting to a backend that went away before iteration raises.
RECONNECT_FOR: Final = 30.0


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of the store, as ``watch()`` delivers it.

    ``event`` is ``created``, ``updated``, ``deleted`` or ``expired``; ``old_value``/``new_value`` are the
    values before and after (None for an absent entry); ``at`` is the commit time (aware UTC).
    ``traceparent`` is the W3C traceparent of the operation that wrote it, when that operation was traced
    (None otherwise, and for writes made with plain SQL); it takes no part in equality nor in the repr.
    Motia's names answer too: ``group_id``, ``item_id`` and ``event_type`` (``state:created``...).
    """

    revision: int
    event: Event
    scope: str
    key: str
    old_value: Any
    new_value: Any
    at: datetime
    traceparent: str | None = field(default=None, compare=False, repr=False)

    @property
    def group_id(self) -> str:
        """Motia's name of the scope."""
        return self.scope

    @property
    def item_id(self) -> str:
        """Motia's name of the key."""
        return self.key

    @property
    def event_type(self) -> str:
        """Motia's trigger event name: ``state:created``, ``state:updated``, ``state:deleted``, ``state:expired``."""
        return "state:" + self.event

    def to_json(self) -> dict[str, Any]:
        """The change as a JSON object (``at`` in ISO 8601), as ``motia-state watch`` prints it."""
        return {
            "revision": self.revision,
            "event": self.event,
            "scope": self.scope,
            "key": self.key,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "at": self.at.isoformat(),
        }


def utc_from_epoch(seconds: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(seconds, UTC)


class ChangeSource(Protocol):
    """The two adapter hooks a stream reads (``StateAdapter.revision`` and ``changes_after``)."""

    async def revision(self, scope: str | None) -> int: ...
    async def changes_after(
        self, scope: str | None, key: str | None, after: int, limit: int, wait: float
    ) -> list[Change]: ...


class StreamOwner(Protocol):
    """What a stream needs of its StateManager (a protocol: this module does not import the manager)."""

    _streams: weakref.WeakSet[ChangeStream]
    _telemetry: Described

    def _check_changes(self, *, every_scope: bool = False) -> None: ...
    async def _connected_adapter(self) -> ChangeSource: ...
    def _translate(self, exc: Exception) -> Exception: ...
    def _raise(self, exc: Exception) -> NoReturn: ...


class ChangeStream:
    """What ``state.watch()`` returns: an async context manager and an async iterator of :class:`Change`.

    ``async with`` subscribes (a watch without ``since`` starts after the revision current then); iterating
    without it subscribes on the first ``anext``. Leaving the block, ``aclose()`` or ``state.close()`` ends it.
    """

    def __init__(self, manager: StreamOwner, scope: str | None, key: str | None, since: int | None) -> None:
        self._manager = manager
        self.scope = scope
        self.key = key
        self._since = since
        self._last: int | None = since
        # Where the next read starts: the last delivered revision, or further when an idle read proved
        # that this scope has no change up to a later revision (so compaction elsewhere cannot strand it).
        self._cursor = since or 0
        self._idle = False
        self._buffer: deque[Change] = deque()
        # The read in progress. It outlives a cancelled ``anext`` (the next call takes its result), so a
        # cancelled wait loses nothing.
        self._pending: asyncio.Task[list[Change]] | None = None
        self._opened = False
        self._closed = False
        # A span per delivered change (SPEC §13); off for a trigger's own watch, whose handler span says it.
        self.traced = True

    def __repr__(self) -> str:
        return f"ChangeStream(scope={self.scope!r}, key={self.key!r}, last_revision={self._last!r})"

    @property
    def last_revision(self) -> int | None:
        """The revision of the last change delivered (or the one the watch started after); None before it opens."""
        return self._last

    async def _open(self) -> None:
        if self._opened:
            return
        self._manager._check_changes(every_scope=self.scope is None)
        adapter = await self._manager._connected_adapter()
        self._manager._streams.add(self)
        try:
            if self._since is None:
                self._last = self._cursor = await adapter.revision(self.scope)
            else:
                # Read at once: a since= older than what is kept fails here, not at the first anext.
                self._buffer.extend(await adapter.changes_after(self.scope, self.key, self._since, BATCH, 0.0))
        except Exception as exc:
            self._manager._streams.discard(self)
            self._manager._raise(exc)
        self._opened = True

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Change:
        if self._closed:
            raise StopAsyncIteration
        if not self._opened:
            await self._open()
        while not self._buffer:
            batch = await self._next_batch()
            last = self._last
            # Belt and braces: whatever an adapter returns, nothing at or below the last delivered revision.
            self._buffer.extend(c for c in batch if last is None or c.revision > last)
        change = self._buffer.popleft()
        self._last = change.revision
        self._cursor = max(self._cursor, change.revision)
        if self.traced and (tel := current_telemetry()) is not None:
            tel.delivered(self._manager._telemetry, change)
        return change

    async def _next_batch(self) -> list[Change]:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._read(self._cursor))
        pending = self._pending
        try:
            batch = await asyncio.shield(pending)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and not (current is not None and current.cancelling()):
                raise StopAsyncIteration from None
            raise  # our caller was cancelled: the read goes on and the next call takes its result
        finally:
            if pending.done() and self._pending is pending:
                self._pending = None
        if self._closed:
            raise StopAsyncIteration
        return batch

    async def _read(self, after: int) -> list[Change]:
        """The next changes after ``after``; reconnects while the backend is away, up to RECONNECT_FOR."""
        manager = self._manager
        give_up: float | None = None
        delay = 0.05
        while True:
            try:
                adapter = await manager._connected_adapter()
                # After an empty read of one scope, note the store's last revision first: if this read is
                # empty too, the scope has no change up to there, and the stream moves on to it (else a
                # quiet scope's watch would stay behind until compaction overtakes it).
                known = None
                if self._idle and self.scope is not None:
                    # (A store whose revisions are per scope -- a Redis Cluster -- has no store-wide one.)
                    per_scope = getattr(adapter, "revisions_per_scope", False)
                    known = await adapter.revision(self.scope if per_scope else None)
                batch = await adapter.changes_after(self.scope, self.key, after, BATCH, WAIT)
                if give_up is not None:
                    _log.info("watch: the store answers again; going on after revision %d", after)
                self._idle = not batch
                if not batch and known is not None and known > self._cursor:
                    self._cursor = known
                return batch
            except ChangesCompactedError:
                raise
            except Exception as exc:
                err = manager._translate(exc)
                if not isinstance(err, StateBackendError):
                    raise err from exc
                now = time.monotonic()
                if give_up is None:
                    give_up = now + RECONNECT_FOR
                    _log.warning("watch: %s; reconnecting for up to %.0f s", err, RECONNECT_FOR)
                elif now >= give_up:
                    raise err from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def aclose(self) -> None:
        """End the watch and release what it holds. Idempotent."""
        self.end()
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            with contextlib.suppress(BaseException):
                await pending

    def end(self) -> None:
        """Stop the stream without waiting (``state.close()`` calls it): iteration stops, without an error."""
        self._closed = True
        self._manager._streams.discard(self)
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()


# A recorded change in the memory log: revision, event, scope, key, old and new JSON text, epoch seconds,
# traceparent.
_Row = tuple[int, str, str, str, str | None, str | None, float, str | None]


def _change(row: _Row) -> Change:
    rev, event, scope, key, old, new, at, traceparent = row
    return Change(
        rev,
        event,  # type: ignore[arg-type]
        scope,
        key,
        None if old is None else decode(old),
        None if new is None else decode(new),
        utc_from_epoch(at),
        traceparent,
    )


class ChangeLog:
    """Changes kept in this process (the memory backend): a revision counter, the retained changes in
    order, and the waiters to wake at each commit.
    """

    def __init__(self, retention: float) -> None:
        self.retention = retention
        # (revision, event, scope, key, old text, new text, at, traceparent)
        self._changes: deque[_Row] = deque()
        self._revision = 0
        self._floor = 0  # the highest revision compacted away
        self._last_of: dict[str, int] = {}  # scope -> its last revision
        self._waiters: set[asyncio.Event] = set()

    def record(
        self,
        event: Event,
        scope: str,
        key: str,
        old: str | None,
        new: str | None,
        at: float,
        traceparent: str | None = None,
    ) -> None:
        """Keep one change; the values are JSON text (None: no value), so every read builds fresh objects.
        ``traceparent``: the writing operation's (None when it was not traced)."""
        self._revision = revision = self._revision + 1
        self._last_of[scope] = revision
        self._changes.append((revision, event, scope, key, old, new, at, traceparent))

    def wake(self) -> None:
        """Wake every waiting reader (after the changes of one operation are recorded)."""
        if self._waiters:
            for waiter in self._waiters:
                waiter.set()
            self._waiters.clear()

    def revision(self, scope: str | None) -> int:
        """The last revision recorded (of ``scope`` when given, else where it would start)."""
        if scope is not None:
            return max(self._last_of.get(scope, 0), self._floor)
        return self._revision

    def check(self, after: int) -> None:
        """ChangesCompactedError when changes after ``after`` were compacted away."""
        if after < self._floor:
            oldest = self._changes[0][0] if self._changes else self._revision + 1
            raise ChangesCompactedError(after, oldest)

    def read(self, scope: str | None, key: str | None, after: int, limit: int) -> list[Change]:
        """Retained changes after ``after`` (of scope/key), oldest first, at most ``limit``."""
        self.check(after)
        out: list[Change] = []
        if not self._changes or self._changes[-1][0] <= after:
            return out
        # Revisions are consecutive in the deque: jump straight to the first one after ``after``.
        start = max(0, after - self._changes[0][0] + 1)
        for i in range(start, len(self._changes)):
            row = self._changes[i]
            if (scope is not None and row[2] != scope) or (key is not None and row[3] != key):
                continue
            out.append(_change(row))
            if len(out) >= limit:
                break
        return out

    def history(self, scope: str, key: str, before: int | None, limit: int) -> list[Change]:
        """Retained changes of (scope, key) below ``before``, newest first, at most ``limit``."""
        log = self._changes
        if not log:
            return []
        # Those at and above ``before`` are skipped (in C, by islice); no await below, so the log stays still.
        skip = 0 if before is None else max(0, min(len(log), log[-1][0] - before + 1))
        out: list[Change] = []
        for row in itertools.islice(reversed(log), skip, None):
            if row[2] == scope and row[3] == key:
                out.append(_change(row))
                if len(out) >= limit:
                    break
        return out

    async def wait(self, after: int, within: float) -> None:
        """Return when a change after ``after`` is recorded, or after ``within`` seconds."""
        if within <= 0 or self._revision > after:
            return
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await event.wait()
        finally:
            self._waiters.discard(event)

    def compact(self, now: float | None = None) -> int:
        """Drop changes older than the retention; return how many."""
        cutoff = (time.time() if now is None else now) - self.retention
        dropped = 0
        while self._changes and self._changes[0][6] < cutoff:
            rev, _, scope, *_rest = self._changes.popleft()
            self._floor = rev
            if self._last_of.get(scope) == rev:
                del self._last_of[scope]
            dropped += 1
        return dropped


def log_compaction(store: str, removed: int, retention: float) -> None:
    """Say (INFO) that compaction removed ``removed`` changes from ``store`` (a masked URL or a file)."""
    if removed > 0:
        _log.info("%s: compacted %d change(s) older than %g s (changes_retention)", store, removed, retention)


def changes_option(value: object) -> bool:
    """on | off (YAML booleans and the strings alike) -> bool."""
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "true", "yes", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("off", "false", "no", "0"):
        return False
    raise ValueError("on or off")


#: The message of the StateConfigError raised by watch()/revision() on a store with ``changes: off``.
CHANGES_OFF: Final = (
    "this store was opened with changes: off, so no change is recorded: set changes: on (config.yml)"
    " or changes=True (from_url/from_config) to use watch(), revision() and on_change()"
)
