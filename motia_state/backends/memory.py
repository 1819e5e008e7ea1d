"""Memory backend: a dict in this process; same semantics as the others, nothing persisted."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from ..adapter import Entry, StateAdapter, StateItem
from ..changes import DEFAULT_RETENTION, Change, ChangeLog, log_compaction
from ..ops import Filter, match
from ..telemetry import OPERATION
from ..triggers import MemoryTriggerStore
from ..values import decode, encode

__all__ = ["MemoryAdapter"]

# (JSON text, expiry as epoch seconds or None). Text, so that every read builds a fresh object.
_Stored = tuple[str, float | None]


def _expiry(ttl: float | None) -> float | None:
    return None if ttl is None else time.time() + ttl


def _aware(expires: float | None) -> datetime | None:
    return None if expires is None else datetime.fromtimestamp(expires, UTC)


class MemoryAdapter(StateAdapter):
    """State in a dict of scopes; atomic within the process because no operation awaits mid-way."""

    backend = "memory"
    # Every value here came through the StateManager's check_value (or an update of one): what update() reads
    # back needs no new check (StateManager._checked_store). The SQL and Redis stores may hold other writers' JSON.
    holds_checked_values: ClassVar[bool] = True

    def __init__(
        self, url: object = None, *, changes: bool = True, changes_retention: float = DEFAULT_RETENTION
    ) -> None:
        # ``url`` (memory://) is accepted so the registry can build every backend alike; it holds nothing.
        self._data: dict[str, dict[str, _Stored]] = {}
        # Every scope of _data in code point order, for scopes_page; None until needed again. Only a new scope
        # drops it: a removed one stays listed until then, and a page skips it (it is no longer in _data).
        self._sorted_scopes: list[str] | None = None
        self.changes_off = not changes
        self._log = ChangeLog(changes_retention)
        self._triggers = MemoryTriggerStore()

    def trigger_store(self) -> MemoryTriggerStore:
        """Where triggers keep their progress: this process."""
        return self._triggers

    def _removed(self, scope: str, entries: Mapping[str, _Stored], now: float, trace: str | None) -> int:
        """Record the removal of ``entries`` (deleted, or expired) by an operation traced as ``trace``;
        return how many were live."""
        live = 0
        if self.changes_off:
            return sum(1 for s in entries.values() if s[1] is None or s[1] > now)
        record = self._log.record
        for k, (text, expires) in entries.items():
            if expires is None or expires > now:
                live += 1
                record("deleted", scope, k, text, None, now, trace)
            else:
                record("expired", scope, k, text, None, now, trace)
        self._log.wake()
        return live

    async def revision(self, scope: str | None) -> int:
        return self._log.revision(scope)

    async def changes_after(
        self, scope: str | None, key: str | None, after: int, limit: int, wait: float
    ) -> list[Change]:
        found = self._log.read(scope, key, after, limit)
        if not found and wait > 0:
            await self._log.wait(after, wait)
            found = self._log.read(scope, key, after, limit)
        return found

    async def key_history(self, scope: str, key: str, before: int | None, limit: int) -> list[Change]:
        return self._log.history(scope, key, before, limit)

    def __repr__(self) -> str:
        return "MemoryAdapter()"

    def _live(self, scope: str, key: str) -> _Stored | None:
        entries = self._data.get(scope)
        if entries is None:
            return None
        stored = entries.get(key)
        if stored is None:
            return None
        expires = stored[1]
        if expires is not None and expires <= time.time():
            return None  # left in place for cleanup() to remove and count
        return stored

    def _live_entries(self, scope: str) -> dict[str, _Stored]:
        entries = self._data.get(scope)
        if not entries:
            return {}
        now = time.time()
        return {k: s for k, s in entries.items() if s[1] is None or s[1] > now}

    def _scope_for_write(self, scope: str) -> dict[str, _Stored]:
        """The scope's entries, created when the scope is new (which drops the sorted list of scopes)."""
        entries = self._data.get(scope)
        if entries is None:
            entries = self._data[scope] = {}
            self._sorted_scopes = None
        return entries

    def _put(self, scope: str, key: str, value: Any, expires: float | None) -> None:
        entries = self._data.get(scope)
        if entries is None:
            entries = self._scope_for_write(scope)
        text = encode(value)
        if not self.changes_off:
            self._record_put(entries, scope, key, text)
        entries[key] = (text, expires)

    def _record_put(self, entries: dict[str, _Stored], scope: str, key: str, text: str) -> None:
        """Record the write of ``text`` at ``key`` of ``entries``, before it replaces what is there."""
        old = entries.get(key)
        now = time.time()
        trace = OPERATION.get() or None  # '' (a span without a valid context) is no traceparent
        if old is None or (old[1] is not None and old[1] <= now):  # absent or expired: a new entry
            self._log.record("created", scope, key, None, text, now, trace)
        else:
            self._log.record("updated", scope, key, old[0], text, now, trace)
        self._log.wake()

    async def get(self, scope: str, key: str) -> Any:
        stored = self._live(scope, key)
        return None if stored is None else decode(stored[0])

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        stored = self._live(scope, key)
        return None if stored is None else Entry(decode(stored[0]), _aware(stored[1]))

    async def set(self, scope: str, key: str, value: Any) -> None:
        self._put(scope, key, value, None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        # _live and _put inline: this is the hot path of every set().
        text = encode(value)
        entries = self._data.get(scope)
        if entries is None:
            entries = self._scope_for_write(scope)
        stored = entries.get(key)
        if not self.changes_off:
            self._record_put(entries, scope, key, text)
        entries[key] = (text, None if ttl is None else time.time() + ttl)
        if stored is None or (stored[1] is not None and stored[1] <= time.time()):
            return None
        return decode(stored[0])

    async def delete(self, scope: str, key: str) -> None:
        await self.delete_entry(scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        entries = self._data.get(scope)
        stored = None if entries is None else entries.get(key)
        if entries is None or stored is None:
            return None
        now = time.time()
        live = stored[1] is None or stored[1] > now
        del entries[key]
        if not entries:
            del self._data[scope]
        self._removed(scope, {key: stored}, now, OPERATION.get() or None)
        return decode(stored[0]) if live else None

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        entries = self._data.get(scope)
        stored = None if entries is None else entries.get(key)
        if stored is not None and stored[1] is not None and stored[1] <= time.time():
            stored = None  # expired: the update starts from an absent entry
        old = None if stored is None else decode(stored[0])
        new = apply(old)
        text = encode(new)
        if entries is None:
            entries = self._scope_for_write(scope)
        if not self.changes_off:
            self._record_put(entries, scope, key, text)
        entries[key] = (text, _expiry(ttl_if_new) if stored is None else stored[1])
        return old, new  # apply() built a fresh object; the store keeps only its text

    async def clear(self, scope: str) -> int:
        entries = self._data.pop(scope, None)
        if not entries:
            return 0
        return self._removed(scope, entries, time.time(), OPERATION.get() or None)

    async def cleanup(self) -> int:
        now = time.time()
        trace = OPERATION.get() or None
        removed = 0
        for scope in list(self._data):
            entries = self._data[scope]
            dead = {
                k: entries.pop(k) for k in sorted(k for k, s in entries.items() if s[1] is not None and s[1] <= now)
            }
            if dead:
                self._removed(scope, dead, now, trace)
            removed += len(dead)
            if not entries:
                del self._data[scope]
        log_compaction("memory://", self._log.compact(now), self._log.retention)
        return removed

    async def keys(self, scope: str) -> list[str]:
        return list(self._live_entries(scope))

    async def list_groups(self) -> list[str]:
        now = time.time()
        return [s for s, entries in self._data.items() if _has_live(entries, now)]

    async def scopes_page(self, after: str | None, limit: int, search: str | None) -> list[str]:
        ordered = self._sorted_scopes
        if ordered is None:
            ordered = self._sorted_scopes = sorted(self._data)
        now = time.time()
        out: list[str] = []
        for i in range(0 if after is None else bisect.bisect_right(ordered, after), len(ordered)):
            s = ordered[i]
            if search is not None and search not in s:
                continue
            entries = self._data.get(s)
            if entries and _has_live(entries, now):
                out.append(s)
                if len(out) >= limit:
                    break
        return out

    async def values(self, scope: str) -> list[Any]:
        live = self._live_entries(scope)
        return [decode(live[k][0]) for k in sorted(live)]

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        scopes = [scope] if scope is not None else sorted(self._data)
        out: list[StateItem] = []
        for s in scopes:
            live = self._live_entries(s)
            names = sorted(live) if after is None else sorted(k for k in live if k > after)
            for k in names:
                text, expires = live[k]
                value = decode(text)
                if filters and not match(value, filters):
                    continue
                out.append(StateItem(s, k, value, _aware(expires)))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in keys:
            stored = self._live(scope, k)
            if stored is not None:
                out[k] = decode(stored[0])
        return out

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        # Encode everything first so that a failure leaves the store untouched.
        expires = _expiry(ttl)
        encoded = {k: (encode(v), expires) for k, v in mapping.items()}
        entries = self._scope_for_write(scope)
        if not self.changes_off:
            now = time.time()
            trace = OPERATION.get() or None
            record = self._log.record
            for k, new in encoded.items():
                old = entries.get(k)
                if old is None or (old[1] is not None and old[1] <= now):
                    record("created", scope, k, None, new[0], now, trace)
                else:
                    record("updated", scope, k, old[0], new[0], now, trace)
            self._log.wake()
        entries.update(encoded)

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        entries = self._data.get(scope)
        if entries is None:
            return 0
        gone = {k: entries.pop(k) for k in keys if k in entries}
        if not entries:
            del self._data[scope]
        return self._removed(scope, gone, time.time(), OPERATION.get() or None) if gone else 0

    async def ttl(self, scope: str, key: str) -> float | None:
        stored = self._live(scope, key)
        if stored is None or stored[1] is None:
            return None
        return max(stored[1] - time.time(), 0.0)


def _has_live(entries: dict[str, _Stored], now: float) -> bool:
    """Whether a scope's entries hold one that has not expired at ``now``."""
    return any(e[1] is None or e[1] > now for e in entries.values())
