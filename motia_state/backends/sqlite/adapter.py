"""SQLite backend: one file (WAL) shared by any number of processes, or a private ``:memory:`` database.

The statements are in ``statements``/``filters``, what runs them in ``operations``, the thread and its
batches in ``worker``; this module maps the adapter's hooks onto them.

The change feed (SPEC §10) is written by triggers in the file (``motia_state.sql.feed``); this adapter reads
``motia_state_changes``, compacts it in ``cleanup()``, and makes the triggers match ``changes`` at connect.
Durable triggers (SPEC §11) keep their progress in the file too: ``trigger_store()`` (module ``triggers``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ...adapter import Entry, StateAdapter, StateItem
from ...changes import DEFAULT_RETENTION, Change
from ...errors import StateConfigError
from ...ops import Filter
from ...sql.connect import sqlite_path
from ...sql.migrate import at_head
from ...telemetry import OPERATION
from ...urls import StoreURL, parse_url
from ...values import decode, encode
from .operations import (
    op_changes_after,
    op_cleanup,
    op_clear,
    op_delete,
    op_delete_entry,
    op_delete_many,
    op_feed_triggers,
    op_get,
    op_get_entry,
    op_get_many,
    op_groups,
    op_items,
    op_key_history,
    op_keys,
    op_revision,
    op_scopes_page,
    op_set,
    op_set_many,
    op_traced,
    op_ttl,
    op_update,
    op_values_text,
)
from .worker import OWN, READ, WRITE, Database, SharedText

if TYPE_CHECKING:
    from .triggers import SQLiteTriggerStore

__all__ = ["SQLiteAdapter"]

_log = logging.getLogger("motia_state")


class SQLiteAdapter(StateAdapter):
    """State in a SQLite file (``sqlite:///rel/path``, ``sqlite:////abs/path``) or ``sqlite:///:memory:``."""

    backend: ClassVar[str] = "sqlite"

    def __init__(
        self,
        url: str | StoreURL,
        *,
        migrate: str = "auto",
        busy_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        changes: bool = True,
        changes_retention: float = DEFAULT_RETENTION,
    ) -> None:
        parsed = url if isinstance(url, StoreURL) else parse_url(url)
        if not parsed.scheme.startswith("sqlite"):
            raise StateConfigError(f"SQLiteAdapter needs a sqlite:// URL, got {parsed.scheme}://…")
        self._url = parsed
        self.path = sqlite_path(parsed)  # None = :memory:
        self.migrate = migrate
        self.busy_timeout = float(busy_timeout)
        self.connect_timeout = float(connect_timeout)
        # The feed is written by triggers in the file, so this is a switch of the whole store (see connect).
        self.changes_off = not changes
        self.changes_retention = float(changes_retention)
        self._db = Database(parsed, self.path, migrate=migrate, busy_timeout=self.busy_timeout)
        self._triggers: SQLiteTriggerStore | None = None

    @property
    def url(self) -> str:
        """The store URL (a SQLite URL holds no password)."""
        return self._url.masked

    def __repr__(self) -> str:
        return f"SQLiteAdapter({self.url!r})"

    # --- lifecycle ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the file (creating it and its folder), set WAL, then bring the schema up to date."""
        if self._db.is_open:
            return
        await self._db.open()
        try:
            # Usual case, schema at head: one query on our own connection, no Alembic, no second engine.
            if self.path is not None and self.migrate != "off" and not at_head(await self._db.schema_version()):
                from ...sql.migrate import ensure_schema

                await ensure_schema(self._url, self.migrate, connect_timeout=self.connect_timeout)
            await self._switch_feed()
        except BaseException:
            await self._db.close()
            raise

    async def _switch_feed(self) -> None:
        """Make the file's triggers match ``changes`` (one sqlite_master query when they already do)."""
        done = await self._db.call(OWN, op_feed_triggers, not self.changes_off)
        if done is None or self.path is None:
            return  # nothing changed, or a private :memory: database that no other process sees
        if done == "dropped":
            _log.warning(
                "changes: off dropped the change-feed triggers of %s: no process using this file records "
                "changes any more (their watches see nothing new) until a store opens it with changes: on",
                self.path,
            )
        else:
            _log.warning(
                "changes: on re-created the change-feed triggers of %s: every process using this file "
                "records changes again (the writes made while they were off were not recorded)",
                self.path,
            )

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent; ``connect`` may follow."""
        await self._db.close()

    def translate_error(self, exc: Exception) -> Exception | None:
        """sqlite3 errors become StateBackendError (with what to do where we know it)."""
        if isinstance(exc, sqlite3.Error):
            return self._db.wrap(exc)
        return None

    async def _call(self, kind: int, fn: Callable[..., Any], *args: Any) -> Any:
        if not self._db.is_open:
            await self.connect()
        return await self._db.call(kind, fn, *args)

    # --- the hooks -------------------------------------------------------------------------------------

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Queue the write ``fn(conn, now, *args)``. Of a traced operation (telemetry.OPERATION holds its
        traceparent, read here in the caller's task), as op_traced: its changes get the traceparent in the same
        transaction. Untraced, or with changes: off (nothing recorded to give it to), the plain job."""
        trace = OPERATION.get()
        if trace and not self.changes_off:
            return await self._call(WRITE, op_traced, trace, fn, *args)
        return await self._call(WRITE, fn, *args)

    async def get(self, scope: str, key: str) -> Any:
        """The live value or None."""
        return await self._call(READ, op_get, scope, key)

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        """The live value with its expiry."""
        result: Entry | None = await self._call(READ, op_get_entry, scope, key)
        return result

    async def set(self, scope: str, key: str, value: Any) -> None:
        """Store ``value`` with no expiry."""
        await self._write(op_set, scope, key, encode(value), None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        """Write and return the old live value, in one transaction (sets queued together: one read of the old
        values and one executemany, see op_set_batch); the old text is decoded here, out of the worker thread."""
        old = await self._write(op_set, scope, key, encode(value), ttl)
        return None if old is None else decode(old)

    async def delete(self, scope: str, key: str) -> None:
        """Remove the entry (absent = no-op)."""
        await self._write(op_delete, scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        """Remove the entry; return its old live value."""
        return await self._write(op_delete_entry, scope, key)

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        """Read, ``apply``, write under SQLite's write lock: atomic across processes."""
        result: tuple[Any, Any] = await self._write(op_update, scope, key, apply, ttl_if_new)
        return result

    async def clear(self, scope: str) -> int:
        """Remove every entry of ``scope``; count the live ones."""
        result: int = await self._write(op_clear, scope)
        return result

    async def cleanup(self) -> int:
        """Delete expired rows in batches of CLEANUP_BATCH, then compact the changes; count the expired rows."""
        trace = OPERATION.get()
        if trace and not self.changes_off:
            result: int = await self._call(OWN, op_cleanup, self.changes_retention, trace)
        else:
            result = await self._call(OWN, op_cleanup, self.changes_retention)
        return result

    async def keys(self, scope: str) -> list[str]:
        """Live keys of ``scope``, sorted."""
        result: list[str] = await self._call(READ, op_keys, scope)
        return result

    async def list_groups(self) -> list[str]:
        """Scopes with at least one live entry, sorted."""
        result: list[str] = await self._call(READ, op_groups)
        return result

    async def scopes_page(self, after: str | None, limit: int, search: str | None) -> list[str]:
        """A page of live scopes after ``after`` containing ``search``: index-driven (``scopes_query``)."""
        result: list[str] = await self._call(READ, op_scopes_page, after, limit, search)
        return result

    async def values(self, scope: str) -> list[Any]:
        """Live values of ``scope`` ordered by key: one JSON array text, read once for the identical lists of a
        batch (a SharedText) and turned into objects here by each caller, its own (out of the worker thread)."""
        text = await self._call(READ, op_values_text, scope)
        if text is None:
            return []
        return cast("list[Any]", text.value() if type(text) is SharedText else decode(text))

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        """Live entries passing ``filters`` (evaluated by SQLite), ordered by (scope, key), keys after ``after``."""
        result: list[StateItem] = await self._call(READ, op_items, scope, tuple(filters), limit, after)
        return result

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        """Live values of the keys that exist."""
        if not keys:
            return {}
        result: dict[str, Any] = await self._call(READ, op_get_many, scope, json.dumps(list(keys)))
        return result

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        """Write every entry in one transaction."""
        if not mapping:
            return
        # One flat list (key, text, key, text...): the statements' parameters are slices of it.
        flat = [""] * (2 * len(mapping))
        flat[0::2] = list(mapping)
        flat[1::2] = [encode(v) for v in mapping.values()]
        await self._write(op_set_many, scope, flat, ttl)

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        """Remove ``keys``; count the live ones removed."""
        if not keys:
            return 0
        result: int = await self._write(op_delete_many, scope, json.dumps(list(keys)))
        return result

    async def ttl(self, scope: str, key: str) -> float | None:
        """Seconds left, or None."""
        result: float | None = await self._call(READ, op_ttl, scope, key)
        return result

    # --- the change feed ---------------------------------------------------------------------------------

    async def revision(self, scope: str | None) -> int:
        """The last revision (of ``scope``), or the floor of what is kept when there is none."""
        result: int = await self._call(READ, op_revision, scope)
        return result

    async def changes_after(
        self, scope: str | None, key: str | None, after: int, limit: int, wait: float
    ) -> list[Change]:
        """Changes after ``after``, oldest first; when none, wait up to ``wait`` s for a commit and read again."""
        deadline = time.monotonic() + wait
        start = after
        while True:
            # Taken before the read: a commit landing between the read and the wait returns the wait at once.
            generation = self._db.generation
            version, found, scanned_to = await self._call(READ, op_changes_after, scope, key, after, start, limit)
            left = deadline - time.monotonic()
            if found or left <= 0:
                return list(found)
            # Nothing up to scanned_to: the next read of this wait starts there (SQLite commits one writer at a
            # time, so no revision at or below what a read saw can commit later). Across calls the stream
            # moves its own cursor the same way.
            if scanned_to is not None:
                start = max(start, scanned_to)
            await self._db.wait_for_change(generation, version, left)

    async def key_history(self, scope: str, key: str, before: int | None, limit: int) -> list[Change]:
        """The key's retained changes below ``before``, newest first: one backward range of the history index."""
        result: list[Change] = await self._call(READ, op_key_history, scope, key, before, limit)
        return result

    # --- durable triggers ----------------------------------------------------------------------------------

    def trigger_store(self) -> SQLiteTriggerStore:
        """Where triggers keep their progress: the trigger tables of this file (one store per adapter)."""
        if self._triggers is None:
            # Imported here: a CLI call that runs no trigger does not load the engine.
            from .triggers import SQLiteTriggerStore

            self._triggers = SQLiteTriggerStore(self._call)
        return self._triggers
