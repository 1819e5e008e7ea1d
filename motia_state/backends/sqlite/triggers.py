"""The SQLite trigger store (SPEC §11): trigger progress in the four ``motia_state_trigger*`` tables of the file.

Every method that writes is one job of the adapter's worker thread running its own ``BEGIN IMMEDIATE``
transaction: SQLite lets one writer in at a time, across every process sharing the file, so a method reads and
writes as if alone (``acquire`` cannot hand one partition to two owners, ``commit`` checks its fence and writes
under the same lock). ``status`` and the look before ``take_retries`` are plain reads. Times are the client's
clock (one file, one machine) read once the lock is held, stored as ``ts()`` text like the entries'
``expires_at``, and compared as text.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, cast

from ...changes import Change, Event
from ...errors import StateValueError
from ...sql import TRIGGER_PARKED_TABLE, TRIGGER_PARTITIONS_TABLE, TRIGGER_WORKERS_TABLE, TRIGGERS_TABLE
from ...triggers import Claim, Parked, TriggerStatus
from ...values import decode, encode
from .operations import parse_ts, rollback, ts
from .worker import OWN, READ

__all__ = ["SQLiteTriggerStore"]

_T: Final = TRIGGERS_TABLE
_P: Final = TRIGGER_PARTITIONS_TABLE
_W: Final = TRIGGER_WORKERS_TABLE
_K: Final = TRIGGER_PARKED_TABLE
# "partition" is a keyword of SQLite's window functions: always quoted.
_PART: Final = '"partition"'

SQL_REGISTER: Final = (
    f"INSERT INTO {_T} (name, start_revision, partitions, handled, skipped, created_at) "
    "VALUES (?, ?, ?, 0, 0, ?) ON CONFLICT (name) DO NOTHING"
)
SQL_TRIGGER: Final = f"SELECT start_revision, partitions FROM {_T} WHERE name = ?"
SQL_ADD_PARTITION: Final = (
    f"INSERT INTO {_P} (name, {_PART}, position, done, owner, lease_until) VALUES (?, ?, ?, '[]', NULL, NULL) "
    f"ON CONFLICT (name, {_PART}) DO NOTHING"
)
SQL_HEARTBEAT: Final = (
    f"INSERT INTO {_W} (name, owner, alive_until) VALUES (?, ?, ?) "
    "ON CONFLICT (name, owner) DO UPDATE SET alive_until = excluded.alive_until"
)
SQL_FORGET_DEAD: Final = f"DELETE FROM {_W} WHERE name = ? AND alive_until <= ?"
SQL_LIVE_WORKERS: Final = f"SELECT count(*) FROM {_W} WHERE name = ? AND alive_until > ?"
SQL_PARTITION_COUNT: Final = f"SELECT count(*) FROM {_P} WHERE name = ?"
SQL_HELD: Final = f"SELECT {_PART} FROM {_P} WHERE name = ? AND owner = ? AND lease_until > ? ORDER BY {_PART}"
SQL_FREE: Final = (
    f"SELECT {_PART} FROM {_P} WHERE name = ? AND (owner IS NULL OR lease_until IS NULL OR lease_until <= ?) "
    f"ORDER BY {_PART} LIMIT ?"
)
SQL_GIVE_BACK_MINE: Final = (
    f"UPDATE {_P} SET owner = NULL, lease_until = NULL WHERE name = ? AND {_PART} = ? AND owner = ?"
)
SQL_TAKE_ONE: Final = f"UPDATE {_P} SET owner = ?, lease_until = ? WHERE name = ? AND {_PART} = ?"
SQL_CLAIMS: Final = (
    f"SELECT {_PART}, position, done FROM {_P} WHERE name = ? AND {_PART} IN (SELECT value FROM json_each(?)) "
    f"ORDER BY {_PART}"
)
# The fence: the row changes only while ``owner`` holds an unexpired lease on it.
SQL_COMMIT: Final = (
    f"UPDATE {_P} SET position = ?, done = ?, lease_until = ? "
    f"WHERE name = ? AND {_PART} = ? AND owner = ? AND lease_until > ?"
)
SQL_COUNT: Final = f"UPDATE {_T} SET handled = handled + ?, skipped = skipped + ? WHERE name = ?"
SQL_FORGET_WORKER: Final = f"DELETE FROM {_W} WHERE name = ? AND owner = ?"
SQL_GIVE_BACK_ALL: Final = f"UPDATE {_P} SET owner = NULL, lease_until = NULL WHERE name = ? AND owner = ?"
_PARKED_COLUMNS: Final = (
    'revision, event, scope, "key", old_value, new_value, at, error, attempts, parked_at, retry, traceparent'
)
# Parking again replaces the record, flag included (as the memory store does).
SQL_PARK: Final = (
    f"INSERT INTO {_K} (name, {_PARKED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) "
    "ON CONFLICT (name, revision) DO UPDATE SET event = excluded.event, scope = excluded.scope, "
    '"key" = excluded."key", old_value = excluded.old_value, new_value = excluded.new_value, at = excluded.at, '
    "error = excluded.error, attempts = excluded.attempts, parked_at = excluded.parked_at, retry = 0, "
    "traceparent = excluded.traceparent"
)
SQL_UNPARK: Final = f"DELETE FROM {_K} WHERE name = ? AND revision = ?"
SQL_ANY_RETRY: Final = f"SELECT 1 FROM {_K} WHERE name = ? AND retry = 1 LIMIT 1"
SQL_RETRIES: Final = f"SELECT {_PARKED_COLUMNS} FROM {_K} WHERE name = ? AND retry = 1 ORDER BY revision LIMIT ?"
SQL_RETRY_TAKEN: Final = (
    f"UPDATE {_K} SET retry = 0 WHERE name = ? AND revision IN (SELECT value FROM json_each(?)) AND retry = 1"
)
SQL_REQUEST_RETRY: Final = f"UPDATE {_K} SET retry = 1 WHERE name = ?"
SQL_STATUS_TRIGGERS: Final = f"SELECT name, start_revision, handled, skipped FROM {_T}"
SQL_STATUS_POSITIONS: Final = f"SELECT name, position FROM {_P} ORDER BY name, {_PART}"
SQL_STATUS_OWNERS: Final = f"SELECT name, owner FROM {_W} WHERE alive_until > ? ORDER BY name, owner"
SQL_STATUS_PARKED: Final = f"SELECT name, {_PARKED_COLUMNS} FROM {_K} ORDER BY name, revision"


def _stamp(when: datetime) -> str:
    """An aware datetime as the stored ``ts()`` text (naive UTC, microseconds)."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _storable(text: str) -> str:
    # An error message may hold lone surrogates (bytes decoded with surrogateescape), which no UTF-8
    # column can take: keep them readable as escapes rather than fail to park the change.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json(value: Any, what: str) -> str | None:
    if value is None:
        return None
    try:
        return _storable(encode(value))
    except (TypeError, ValueError) as exc:
        raise StateValueError(f"the {what} of a parked change cannot be stored as JSON: {exc}") from exc


def _transaction(conn: sqlite3.Connection, work: Callable[..., Any], *args: Any) -> Any:
    """Run ``work(conn, now_epoch, *args)`` in one BEGIN IMMEDIATE transaction. The clock is read once the
    write lock is held: after a wait for the lock (up to busy_timeout) leases are judged by the time now."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn, time.time(), *args)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return result


def _parked(name: str, row: Sequence[Any]) -> Parked:
    rev, event, scope, key, old, new, at, error, attempts, parked_at, retry, trace = row
    stamp, parked_stamp = parse_ts(at), parse_ts(parked_at)
    assert stamp is not None and parked_stamp is not None  # NOT NULL columns
    change = Change(
        int(rev),
        cast(Event, event),
        scope,
        key,
        None if old is None else decode(old),
        None if new is None else decode(new),
        stamp,
        trace,
    )
    return Parked(name, change, error, int(attempts), parked_stamp, bool(retry))


# --- the transactions, run in the worker thread ------------------------------------------------------------


def _register(conn: sqlite3.Connection, now: float, name: str, start: int, partitions: int) -> int:
    conn.execute(SQL_REGISTER, (name, start, partitions, ts(now)))
    first, count = conn.execute(SQL_TRIGGER, (name,)).fetchone()
    # The partitions follow the stored row, so a second registration with another count changes nothing.
    conn.executemany(SQL_ADD_PARTITION, [(name, p, first) for p in range(int(count))])
    return int(first)


def _acquire(conn: sqlite3.Connection, now: float, name: str, owner: str, lease: float) -> list[Claim]:
    at, until = ts(now), ts(now + lease)
    conn.execute(SQL_HEARTBEAT, (name, owner, until))
    conn.execute(SQL_FORGET_DEAD, (name, at))
    (live,) = conn.execute(SQL_LIVE_WORKERS, (name, at)).fetchone()
    (partitions,) = conn.execute(SQL_PARTITION_COUNT, (name,)).fetchone()
    # max(): a lease so short that its heartbeat is already over still counts this owner.
    share = math.ceil(int(partitions) / max(int(live), 1))
    held = [int(p) for (p,) in conn.execute(SQL_HELD, (name, owner, at))]
    # Claims beyond the share are renewed and flagged: the engine hands them back once drained.
    surplus = set(held[share:])
    keep = list(held)
    if len(keep) < share:
        # Free, expired, or this owner's own expired claims: the lowest first, as the memory store does.
        keep += [int(p) for (p,) in conn.execute(SQL_FREE, (name, at, share - len(keep)))]
    conn.executemany(SQL_TAKE_ONE, [(owner, until, name, p) for p in keep])
    # Exactly the ones just renewed or taken: this owner's expired rows left over are nobody's claims.
    return [
        Claim(int(p), int(position), frozenset(int(r) for r in decode(done)), surplus=int(p) in surplus)
        for p, position, done in conn.execute(SQL_CLAIMS, (name, encode(keep)))
    ]


def _commit(
    conn: sqlite3.Connection,
    now: float,
    name: str,
    owner: str,
    partition: int,
    position: int,
    done: str,
    handled: int,
    skipped: int,
    lease: float,
) -> bool:
    matched = conn.execute(SQL_COMMIT, (position, done, ts(now + lease), name, partition, owner, ts(now))).rowcount
    if matched != 1:
        return False
    # The counts move with the position, in the same transaction: a rejected commit counts nothing.
    conn.execute(SQL_COUNT, (handled, skipped, name))
    return True


def _release(conn: sqlite3.Connection, now: float, name: str, owner: str, partitions: list[int] | None) -> None:
    if partitions is None:
        conn.execute(SQL_FORGET_WORKER, (name, owner))
        conn.execute(SQL_GIVE_BACK_ALL, (name, owner))
    else:
        conn.executemany(SQL_GIVE_BACK_MINE, [(name, p, owner) for p in partitions])


def _park(conn: sqlite3.Connection, now: float, name: str, row: tuple[Any, ...], trace: str | None) -> None:
    conn.execute(SQL_PARK, (name, *row, ts(now), trace))


def _unpark(conn: sqlite3.Connection, now: float, name: str, revision: int) -> None:
    conn.execute(SQL_UNPARK, (name, revision))


def _take_retries(conn: sqlite3.Connection, now: float, name: str, limit: int) -> list[Parked]:
    rows = conn.execute(SQL_RETRIES, (name, limit)).fetchall()
    if rows:
        conn.execute(SQL_RETRY_TAKEN, (name, encode([int(r[0]) for r in rows])))
    return [_parked(name, r) for r in rows]


def _request_retry(conn: sqlite3.Connection, now: float, name: str) -> int:
    # rowcount counts every matching row, already flagged ones too: "how many are now asked for".
    return int(conn.execute(SQL_REQUEST_RETRY, (name,)).rowcount)


def op_trigger(conn: sqlite3.Connection, now: str, work: Callable[..., Any], *args: Any) -> Any:
    """A worker job: one store method as one IMMEDIATE transaction."""
    return _transaction(conn, work, *args)


def op_any_retry(conn: sqlite3.Connection, now: str, name: str) -> bool:
    """Whether a parked change of ``name`` is flagged for a retry (a plain read)."""
    return conn.execute(SQL_ANY_RETRY, (name,)).fetchone() is not None


def op_status(conn: sqlite3.Connection, now: str) -> list[TriggerStatus]:
    """Every trigger's status from one read snapshot: no write lock, so the CLI never stalls the workers."""
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        at = ts(time.time())
        triggers = conn.execute(SQL_STATUS_TRIGGERS).fetchall()
        positions: dict[str, list[int]] = {}
        for name, position in conn.execute(SQL_STATUS_POSITIONS):
            positions.setdefault(name, []).append(int(position))
        owners: dict[str, list[str]] = {}
        for name, owner in conn.execute(SQL_STATUS_OWNERS, (at,)):
            owners.setdefault(name, []).append(owner)
        parked: dict[str, list[Parked]] = {}
        for row in conn.execute(SQL_STATUS_PARKED):
            parked.setdefault(row[0], []).append(_parked(row[0], row[1:]))
    finally:
        if own:
            rollback(conn)  # nothing was written: ending the read snapshot is all that is left
    return [
        TriggerStatus(
            name,
            int(start),
            tuple(positions.get(name, ())),
            int(handled),
            int(skipped),
            tuple(sorted(owners.get(name, ()))),
            tuple(parked.get(name, ())),
        )
        for name, start, handled, skipped in sorted(triggers)
    ]


class SQLiteTriggerStore:
    """Trigger progress in the SQLite file, shared by every process that opens it (``adapter.trigger_store()``)."""

    def __init__(self, call: Callable[..., Awaitable[Any]]) -> None:
        # The adapter's ``_call(kind, fn, *args)``: connects when needed, then runs ``fn`` in its worker thread.
        self._call = call

    async def _run(self, fn: Callable[..., Any], *args: Any, kind: int = OWN) -> Any:
        try:
            return await self._call(kind, fn, *args)
        except UnicodeEncodeError as exc:  # sqlite3 binds str as UTF-8: a lone surrogate in a name
            raise StateValueError(f"a trigger name or value is not valid UTF-8: {exc}") from exc

    async def register(self, name: str, start: int, partitions: int) -> int:
        """Create the trigger at ``start`` unless it exists; return its start revision."""
        result: int = await self._run(op_trigger, _register, name, start, partitions)
        return result

    async def acquire(self, name: str, owner: str, lease: float) -> list[Claim]:
        """Heartbeat, then renew and claim up to the fair share of partitions; the owner's claims."""
        result: list[Claim] = await self._run(op_trigger, _acquire, name, owner, lease)
        return result

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
        """Record a partition's progress and renew its lease, only while ``owner`` holds it."""
        text = encode([int(r) for r in done])
        result: bool = await self._run(
            op_trigger, _commit, name, owner, partition, position, text, handled, skipped, lease
        )
        return result

    async def release(self, name: str, owner: str, partitions: Sequence[int] | None = None) -> None:
        """Give back ``partitions`` of ``owner`` (None: every claim, and forget its heartbeat)."""
        if partitions is not None and not partitions:
            return
        only = None if partitions is None else [int(p) for p in partitions]
        await self._run(op_trigger, _release, name, owner, only)

    async def park(self, name: str, change: Change, error: str, attempts: int) -> None:
        """Keep ``change`` as failed (replacing an earlier record of the same revision)."""
        row = (
            change.revision,
            change.event,
            change.scope,
            change.key,
            _json(change.old_value, "old value"),
            _json(change.new_value, "new value"),
            _stamp(change.at),
            _storable(error),
            attempts,
        )
        # The traceparent travels with the copy: a retried handler still links to the write.
        await self._run(op_trigger, _park, name, row, change.traceparent)

    async def unpark(self, name: str, revision: int) -> None:
        """Forget a parked change (its retry succeeded)."""
        await self._run(op_trigger, _unpark, name, revision)

    async def take_retries(self, name: str, limit: int) -> list[Parked]:
        """Parked changes asked to be retried, oldest revision first (their flag is cleared)."""
        # The engine asks every half second per trigger: a plain read answers the usual "none" without the
        # file's write lock (and without waking the watches of this process and others for a commit).
        if limit <= 0 or not await self._run(op_any_retry, name, kind=READ):
            return []
        # Read again under the lock: another process may have taken them meanwhile.
        result: list[Parked] = await self._run(op_trigger, _take_retries, name, limit)
        return result

    async def request_retry(self, name: str) -> int:
        """Flag every parked change of ``name`` for a retry; return how many."""
        result: int = await self._run(op_trigger, _request_retry, name)
        return result

    async def status(self) -> list[TriggerStatus]:
        """Every registered trigger, by name."""
        result: list[TriggerStatus] = await self._run(op_status, kind=READ)
        return result
