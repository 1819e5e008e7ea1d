"""The contract a backend implements: built-in adapters and users' custom adapters alike.

A custom adapter may define only the reference's five methods (``get``, ``set``, ``delete``, ``clear``,
``cleanup``); every other hook has a default built on those, or raises ``NotImplementedError`` naming the
method to add. Values crossing this boundary are plain, already validated JSON values (dict, list, str,
int, float, bool, None); the adapter must return fresh objects on every read. ``ttl`` arguments are
seconds (float) or None for no expiry; the expiry clock starts when the adapter performs the write.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

from .errors import ChangesCompactedError
from .ops import Filter, match

if TYPE_CHECKING:
    from .changes import Change
    from .urls import StoreURL

__all__ = ["Entry", "SetResult", "StateAdapter", "StateItem", "server_attributes"]


_SET_RESULT_FIELDS: Final = ("old_value", "new_value")
#: ``db.collection.name`` of the stores without a table of their own (memory, custom adapters).
TELEMETRY_COLLECTION: Final = "motia_state"


@dataclass(frozen=True, slots=True)
class SetResult(Mapping[str, Any]):
    """What ``set`` and ``update`` return: the value before and after the write.

    Also a read-only mapping with the keys ``old_value`` and ``new_value``, the shape Motia's engine
    returns: ``result["new_value"]`` and ``dict(result)`` work as in a Motia handler.
    """

    old_value: Any
    new_value: Any

    def __getitem__(self, name: str) -> Any:
        if name == "old_value":
            return self.old_value
        if name == "new_value":
            return self.new_value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(_SET_RESULT_FIELDS)

    def __len__(self) -> int:
        return 2


@dataclass(frozen=True, slots=True)
class StateItem:
    """One entry as ``items`` returns it; ``expires_at`` is an aware UTC datetime or None."""

    scope: str
    key: str
    value: Any
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value with its expiry (an aware UTC datetime, or None for never)."""

    value: Any
    expires_at: datetime | None = None


def seconds_left(expires_at: datetime | None) -> float | None:
    """Seconds until ``expires_at`` (None for never); may be <= 0 when already past."""
    return None if expires_at is None else expires_at.timestamp() - time.time()


#: Changes read per round trip by the default ``key_history`` (a stream's batch, ``changes.BATCH``).
_HISTORY_BATCH: Final = 500


# Fallback home of the default update's lock for adapters whose instances take no new attributes.
_update_locks: dict[int, asyncio.Lock] = {}


def _update_lock(adapter: object) -> asyncio.Lock:
    # Created lazily on the instance: a subclass may never call StateAdapter.__init__.
    lock = getattr(adapter, "_motia_state_update_lock", None)
    if lock is None:
        lock = asyncio.Lock()
        try:
            object.__setattr__(adapter, "_motia_state_update_lock", lock)
        except AttributeError:
            lock = _update_locks.setdefault(id(adapter), lock)
    assert isinstance(lock, asyncio.Lock)
    return lock


class StateAdapter:
    """Base class of every backend. Override the five reference methods at least."""

    #: Short name used in error messages ("sqlite", "postgres", "redis", "memory", ...).
    backend: ClassVar[str] = "custom"
    #: True when the store was opened with ``changes: off``: nothing is recorded, watch() refuses.
    changes_off: bool = False
    #: Why this adapter cannot record changes at all (watch() then raises StateConfigError with it), or None.
    changes_unsupported: str | None = None

    # --- lifecycle (optional) ------------------------------------------------------------------

    async def connect(self) -> None:
        """Open connections, run migrations. Called once before the first operation."""

    async def close(self) -> None:
        """Release connections. Must be idempotent."""

    def translate_error(self, exc: Exception) -> Exception | None:
        """Map a driver exception to a StateError (or None to let it propagate unchanged)."""
        return None

    def telemetry_attributes(self) -> dict[str, str | int]:
        """The OpenTelemetry attributes describing this store on every span and metric (SPEC §13):
        ``db.system.name``, ``db.collection.name`` and, for a server, ``db.namespace``, ``server.address``,
        ``server.port``. Never a password."""
        return {"db.system.name": self.backend, "db.collection.name": TELEMETRY_COLLECTION}

    # --- the reference's five methods ----------------------------------------------------------

    async def get(self, scope: str, key: str) -> Any:
        """The live value, or None."""
        raise NotImplementedError(f"{type(self).__name__} must implement get(scope, key)")

    async def set(self, scope: str, key: str, value: Any) -> None:
        """Store ``value`` with no expiry."""
        raise NotImplementedError(f"{type(self).__name__} must implement set(scope, key, value)")

    async def delete(self, scope: str, key: str) -> None:
        """Remove the entry (absent = no-op)."""
        raise NotImplementedError(f"{type(self).__name__} must implement delete(scope, key)")

    async def clear(self, scope: str) -> int | None:
        """Remove every entry of exactly ``scope``; return how many (None when unknown)."""
        raise NotImplementedError(f"{type(self).__name__} must implement clear(scope)")

    async def cleanup(self) -> int | None:
        """Remove expired entries; return how many (None when unknown)."""
        raise NotImplementedError(f"{type(self).__name__} must implement cleanup()")

    # --- richer hooks with defaults built on the five ------------------------------------------

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        """The live entry with its expiry, or None. Default: ``get`` (no expiry known)."""
        value = await self.get(scope, key)
        return None if value is None else Entry(value)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        """Write ``value`` (expiring after ``ttl`` seconds) and return the old live value, atomically."""
        if ttl is not None:
            raise NotImplementedError(
                f"{type(self).__name__} has no expiry support: override set_entry(scope, key, value, ttl)"
            )
        old = await self.get(scope, key)
        await self.set(scope, key, value)
        return old

    async def delete_entry(self, scope: str, key: str) -> Any:
        """Remove the entry and return its old live value (None if absent)."""
        old = await self.get(scope, key)
        await self.delete(scope, key)
        return old

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        """Atomically replace the value with ``apply(old)`` (old None = absent); keep the entry's expiry.

        A new entry expires after ``ttl_if_new``. If ``apply`` raises, nothing is written. The default is
        atomic within one process only: override it with the backend's own transaction or CAS.
        """
        async with _update_lock(self):
            entry = await self.get_entry(scope, key)
            old = None if entry is None else entry.value
            new = apply(old)
            if entry is None:
                ttl = ttl_if_new
            else:
                left = seconds_left(entry.expires_at)
                ttl = None if left is None else max(left, 0.001)
            await self.set_entry(scope, key, new, ttl)
            return old, new

    async def keys(self, scope: str) -> list[str]:
        """Live keys of ``scope`` (any order; the manager sorts)."""
        raise NotImplementedError(f"{type(self).__name__} does not list keys: override keys(scope)")

    async def list_groups(self) -> list[str]:
        """Scopes holding at least one live entry (any order; the manager sorts)."""
        raise NotImplementedError(f"{type(self).__name__} does not list scopes: override list_groups()")

    async def values(self, scope: str) -> list[Any]:
        """Live values of ``scope`` ordered by key (code point)."""
        return [item.value for item in await self.items(scope, (), None)]

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        """Live entries (of ``scope``, or all) passing ``filters``, ordered by (scope, key), at most ``limit``.

        ``after`` (keyword, only passed with a ``scope``): keep only keys sorting strictly after it by code
        point, for keyset paging. The manager passes it only when it is not None, so an override written
        before it existed keeps working for ordinary calls; such an override should add the parameter.
        """
        scopes = [scope] if scope is not None else sorted(set(await self.list_groups()))
        out: list[StateItem] = []
        for s in scopes:
            names = sorted(await self.keys(s))
            if after is not None:
                # Keys only are filtered first: values are read just for the page.
                names = names[bisect.bisect_right(names, after) :]
            for k in names:
                entry = await self.get_entry(s, k)
                if entry is None or not match(entry.value, filters):
                    continue
                out.append(StateItem(s, k, entry.value, entry.expires_at))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        """Live values of ``keys`` that exist; missing keys are left out."""
        out: dict[str, Any] = {}
        for k in keys:
            entry = await self.get_entry(scope, k)
            if entry is not None:
                out[k] = entry.value
        return out

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        """Write every entry, all or nothing. The default is not atomic: override it."""
        for k, v in mapping.items():
            await self.set_entry(scope, k, v, ttl)

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        """Remove ``keys``; return how many live entries were removed."""
        removed = 0
        for k in keys:
            if await self.get_entry(scope, k) is not None:
                await self.delete(scope, k)
                removed += 1
        return removed

    async def ttl(self, scope: str, key: str) -> float | None:
        """Seconds left, or None for no expiry or no entry."""
        entry = await self.get_entry(scope, key)
        if entry is None:
            return None
        left = seconds_left(entry.expires_at)
        return None if left is None else max(left, 0.0)

    async def scopes_page(self, after: str | None, limit: int, search: str | None) -> list[str]:
        """At most ``limit`` scopes holding a live entry, in code point order, each sorting strictly after
        ``after`` (None: from the first) and containing ``search`` (None: any) as a plain, case-sensitive
        substring: the state browser's page of scopes.

        Default: all of ``list_groups()``, sorted here; a backend overrides it with a range read.
        """
        scopes = sorted(set(await self.list_groups()))
        start = 0 if after is None else bisect.bisect_right(scopes, after)
        if search is None:
            return scopes[start : start + limit]
        out: list[str] = []
        for i in range(start, len(scopes)):
            scope = scopes[i]
            if search in scope:
                out.append(scope)
                if len(out) >= limit:
                    break
        return out

    # --- the change feed (SPEC §10; optional) ----------------------------------------------------

    async def revision(self, scope: str | None) -> int:
        """The revision of the last committed change (of ``scope`` when given) a watch would start after."""
        raise NotImplementedError(
            f"{type(self).__name__} records no changes: override revision(scope) and"
            " changes_after(scope, key, after, limit, wait) to support watch()"
        )

    async def changes_after(
        self, scope: str | None, key: str | None, after: int, limit: int, wait: float
    ) -> list[Change]:
        """Committed changes with a revision above ``after`` (of ``scope``/``key`` when given), oldest first,
        at most ``limit``. When there are none yet, wait up to ``wait`` seconds for one ([] if none came).

        Raises :class:`~motia_state.ChangesCompactedError` when changes after ``after`` are no longer kept.
        """
        raise NotImplementedError(
            f"{type(self).__name__} records no changes: override revision(scope) and"
            " changes_after(scope, key, after, limit, wait) to support watch()"
        )

    async def key_history(self, scope: str, key: str, before: int | None, limit: int) -> list[Change]:
        """The retained changes of ``scope``/``key`` with a revision below ``before`` (None: all), newest first,
        at most ``limit``: one page of a key's history, paged backwards with ``before`` = the last revision.

        Default: the key's whole retained history read forward with ``changes_after``, keeping the last
        ``limit``; a backend overrides it with a backward read. A store without changes raises what
        ``changes_after`` raises.
        """
        kept: deque[Change] = deque(maxlen=limit)
        after = 0
        while True:
            try:
                batch = await self.changes_after(scope, key, after, _HISTORY_BATCH, 0.0)
            except ChangesCompactedError as exc:
                if exc.oldest - 1 <= after:
                    raise  # no progress possible: not a compaction this read can step over
                after = exc.oldest - 1  # the history starts at the oldest change still kept
                continue
            for change in batch:
                if before is not None and change.revision >= before:
                    return list(reversed(kept))
                kept.append(change)
            # Fewer than asked: the end. A batch not moving forward would loop forever: treat it so too.
            if len(batch) < _HISTORY_BATCH or batch[-1].revision <= after:
                return list(reversed(kept))
            after = batch[-1].revision


def server_attributes(
    url: StoreURL, system: str, collection: str, namespace: str | None, default_port: int
) -> dict[str, str | int]:
    """The telemetry attributes of a store on a server at ``url`` (its first host): never the credentials."""
    attributes: dict[str, str | int] = {"db.system.name": system, "db.collection.name": collection}
    if namespace:
        attributes["db.namespace"] = namespace
    hosts = url.host_list()
    if hosts:
        host, port = hosts[0]
        attributes["server.address"] = host
        attributes["server.port"] = port or default_port
    return attributes
