"""The Postgres trigger store (SPEC §11): trigger progress, partition leases and parked changes in SQL.

Many worker processes on many hosts share one database, so every lease and heartbeat is on the database
clock (``now()``), claims are row locks (``FOR UPDATE SKIP LOCKED``: two acquirers never take the same
partition and never wait for each other), and a commit is one statement fenced by the holder's lease.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any, Final, TypeVar, cast

from ...changes import Change, Event
from ...sql import TRIGGER_PARKED_TABLE, TRIGGER_PARTITIONS_TABLE, TRIGGER_WORKERS_TABLE, TRIGGERS_TABLE, qualified
from ...triggers import Claim, Parked, TriggerStatus
from ...values import decode, encode
from .connection import DRIVER_ERRORS, Pool

__all__ = ["PostgresTriggerStore"]

R = TypeVar("R")

LEASE: Final = "now() + {s}::float8 * interval '1 second'"
# A partition nobody holds: never claimed, given back, or its holder's lease ran out.
FREE: Final = "(owner IS NULL OR lease_until IS NULL OR lease_until <= now())"

_PARKED_COLUMNS: Final = "p.name, p.revision, p.event, p.scope, p.key, p.old_value::text, p.new_value::text, p.at, \
p.error, p.attempts, p.parked_at, p.retry, p.traceparent"


class TriggerStatements:
    """The trigger store's statements, for the tables of one schema (None: those on the search_path)."""

    def __init__(self, schema: str | None) -> None:
        TR = qualified(TRIGGERS_TABLE, schema)  # the tables, named as in the SQL text
        PA = qualified(TRIGGER_PARTITIONS_TABLE, schema)
        WO = qualified(TRIGGER_WORKERS_TABLE, schema)
        PK = qualified(TRIGGER_PARKED_TABLE, schema)

        # The trigger and its partitions, unless it exists. When another process registers it at the same moment,
        # the ON CONFLICT waits for that commit and then this statement's snapshot sees neither row: no row comes
        # back and the caller asks again.
        self.REGISTER = f"""
        WITH ins AS (
            INSERT INTO {TR} (name, start_revision, partitions) VALUES ($1::text, $2::bigint, $3::int)
            ON CONFLICT (name) DO NOTHING
            RETURNING start_revision
        ), parts AS (
            INSERT INTO {PA} (name, partition, position, done, owner, lease_until)
            SELECT $1::text, p, $2::bigint, '[]'::jsonb, NULL, NULL FROM ins, generate_series(0, $3::int - 1) AS p
            ON CONFLICT (name, partition) DO NOTHING
        )
        SELECT start_revision FROM ins
        UNION ALL
        SELECT start_revision FROM {TR} WHERE name = $1
        LIMIT 1
        """

        # The heartbeat, and how many owners are live counting this one. The CTEs share the statement's snapshot,
        # so the count cannot see the upsert: it counts the others and adds one. Dead heartbeats are deleted on
        # the way (a crashed worker never says goodbye), skipping rows another acquirer has locked: nobody waits
        # for housekeeping.
        self.BEAT = f"""
        WITH beat AS (
            INSERT INTO {WO} (name, owner, alive_until) VALUES ($1, $2, {LEASE.format(s="$3")})
            ON CONFLICT (name, owner) DO UPDATE SET alive_until = excluded.alive_until
        ), dead AS MATERIALIZED (
            SELECT owner FROM {WO} WHERE name = $1 AND owner <> $2 AND alive_until <= now() FOR UPDATE SKIP LOCKED
        ), gone AS (
            DELETE FROM {WO} WHERE name = $1 AND owner IN (SELECT owner FROM dead)
        )
        SELECT
            (SELECT partitions FROM {TR} WHERE name = $1),
            1 + (SELECT count(*) FROM {WO} WHERE name = $1 AND owner <> $2 AND alive_until > now())
        """

        # The owner's live claims, locked in partition order. This one waits (the owner's own commit may hold a
        # row for a moment): skipping would drop a partition still held. Nobody else locks a live claim, except an
        # acquirer whose clock says it just expired; FOR UPDATE then re-reads the row it took and leaves it out.
        self.MINE = f"""
        SELECT partition FROM {PA} WHERE name = $1 AND owner = $2 AND lease_until > now()
        ORDER BY partition FOR UPDATE
        """

        # Free or expired partitions, at most $2, in partition order; rows locked by another acquirer are skipped,
        # and a row it claimed meanwhile is re-checked by FOR UPDATE and left out.
        self.FREE_ONES = f"""
        SELECT partition FROM {PA} WHERE name = $1 AND {FREE}
        ORDER BY partition LIMIT $2 FOR UPDATE SKIP LOCKED
        """

        # The locked rows: the kept and newly claimed ones ($3) get the lease, the excess ($4) is given back.
        self.CLAIM = f"""
        UPDATE {PA} SET
            owner = CASE WHEN partition = ANY($3::int[]) THEN $2::text END,
            lease_until = CASE WHEN partition = ANY($3::int[]) THEN {LEASE.format(s="$5")} END
        WHERE name = $1 AND (partition = ANY($3::int[]) OR partition = ANY($4::int[]))
        RETURNING partition, owner IS NOT NULL, position, done::text
        """

        # Fenced: the partition's row changes only while $2 holds a live lease on it; the counts follow only then
        # (the CTE's RETURNING says whether it matched). Rows are locked partition first, then the trigger's, in
        # every statement that takes both, so concurrent commits cannot deadlock.
        self.COMMIT = f"""
        WITH part AS (
            UPDATE {PA} SET position = $4::bigint, done = to_jsonb($5::bigint[]), lease_until = {LEASE.format(s="$8")}
            WHERE name = $1 AND partition = $3 AND owner = $2 AND lease_until > now()
            RETURNING 1
        ), counts AS (
            UPDATE {TR} SET handled = handled + $6::bigint, skipped = skipped + $7::bigint
            WHERE name = $1 AND ($6::bigint <> 0 OR $7::bigint <> 0) AND EXISTS (SELECT 1 FROM part)
        )
        SELECT EXISTS (SELECT 1 FROM part)
        """

        # Rows locked in partition order, like an acquirer's, before they are given back.
        self.RELEASE = f"""
        WITH beat AS (
            DELETE FROM {WO} WHERE name = $1 AND owner = $2
        ), held AS MATERIALIZED (
            SELECT partition FROM {PA} WHERE name = $1 AND owner = $2 ORDER BY partition FOR UPDATE
        )
        UPDATE {PA} SET owner = NULL, lease_until = NULL
        WHERE name = $1 AND owner = $2 AND partition IN (SELECT partition FROM held)
        """

        # Only the partitions $3 of the owner (a surplus one, drained); the heartbeat stays.
        self.RELEASE_SOME = f"""
        WITH held AS MATERIALIZED (
            SELECT partition FROM {PA} WHERE name = $1 AND owner = $2 AND partition = ANY($3::int[])
            ORDER BY partition FOR UPDATE
        )
        UPDATE {PA} SET owner = NULL, lease_until = NULL
        WHERE name = $1 AND owner = $2 AND partition IN (SELECT partition FROM held)
        """

        # Values as the change feed keeps them: JSON text cast to jsonb, SQL NULL for an absent one.
        self.PARK = f"""
        INSERT INTO {PK} AS p
            (name, revision, event, scope, key, old_value, new_value, at, error, attempts, parked_at, retry,
             traceparent)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9, $10, now(), false, $11)
        ON CONFLICT (name, revision) DO UPDATE SET
            event = excluded.event, scope = excluded.scope, key = excluded.key, old_value = excluded.old_value,
            new_value = excluded.new_value, at = excluded.at, error = excluded.error, attempts = excluded.attempts,
            parked_at = now(), retry = false, traceparent = excluded.traceparent
        """

        self.UNPARK = f"DELETE FROM {PK} WHERE name = $1 AND revision = $2"

        # Flag cleared and rows returned in one statement; SKIP LOCKED: concurrent takers split the rows, and a row
        # another taker cleared meanwhile is re-checked by FOR UPDATE and left out. MATERIALIZED: the locked set is
        # read once (a rescan of a LIMIT ... SKIP LOCKED query could pick other rows). ``p.retry`` in RETURNING is
        # the new value (false); the caller reports them as they were taken (asked for a retry).
        self.TAKE_RETRIES = f"""
        WITH t AS MATERIALIZED (
            SELECT revision FROM {PK} WHERE name = $1 AND retry ORDER BY revision LIMIT $2 FOR UPDATE SKIP LOCKED
        )
        UPDATE {PK} AS p SET retry = false
        FROM t
        WHERE p.name = $1 AND p.revision = t.revision
        RETURNING {_PARKED_COLUMNS}
        """

        self.REQUEST_RETRY = f"UPDATE {PK} SET retry = true WHERE name = $1"

        self.STATUS_TRIGGERS = f"SELECT name, start_revision, handled, skipped FROM {TR} ORDER BY name"
        self.STATUS_POSITIONS = f"SELECT name, position FROM {PA} ORDER BY name, partition"
        self.STATUS_OWNERS = f"SELECT name, owner FROM {WO} WHERE alive_until > now() ORDER BY name, owner"
        self.STATUS_PARKED = f"SELECT {_PARKED_COLUMNS} FROM {PK} AS p ORDER BY p.name, p.revision"


@cache
def trigger_statements(schema: str | None) -> TriggerStatements:
    """The statements of the trigger tables in ``schema``, built once per schema."""
    return TriggerStatements(schema)


_REGISTER_TRIES: Final = 5


def _value(text: str | None) -> Any:
    return None if text is None else decode(text)


def _parked(row: Any, retry: bool | None = None) -> Parked:
    change = Change(row[1], cast(Event, row[2]), row[3], row[4], _value(row[5]), _value(row[6]), row[7], row[12])
    return Parked(row[0], change, row[8], row[9], row[10], row[11] if retry is None else retry)


class PostgresTriggerStore:
    """Trigger progress in the ``motia_state_trigger*`` tables, shared by every worker on the database."""

    def __init__(self, pool: Pool, schema: str | None = None) -> None:
        self._pg = pool
        self._q = trigger_statements(schema)

    async def _transaction(self, work: Callable[[Any], Awaitable[R]], *, again: bool, **options: Any) -> R:
        """``work(conn)`` in one transaction; run again after a rollback by the server (or any lost
        connection when ``again``: the work is safe to repeat); driver errors as StateBackendError."""
        attempt = 0
        while True:
            pool = await self._pg.require()
            try:
                async with pool.acquire() as conn, conn.transaction(**options):
                    return await work(conn)
            except DRIVER_ERRORS as exc:
                attempt += 1
                await self._pg.after_failure(exc)
                if not self._pg.retryable(exc, again, attempt):
                    raise self._pg.error(exc) from exc

    async def register(self, name: str, start: int, partitions: int) -> int:
        for _ in range(_REGISTER_TRIES):
            found = await self._pg.run("fetchval", self._q.REGISTER, (name, start, partitions), read=False)
            if found is not None:
                return int(found)
        raise self._pg.error(RuntimeError(f"trigger {name!r}: registering it kept racing with other workers"))

    async def acquire(self, name: str, owner: str, lease: float) -> list[Claim]:
        seconds = float(lease)

        async def work(conn: Any) -> list[Claim]:
            partitions, live = await conn.fetchrow(self._q.BEAT, name, owner, seconds)
            if partitions is None:
                return []  # not registered (the engine registers before acquiring)
            share = math.ceil(partitions / live)
            mine = [r[0] for r in await conn.fetch(self._q.MINE, name, owner)]
            # Claims beyond the share are renewed and flagged: the engine hands them back once drained.
            surplus = set(mine[share:])
            keep = list(mine)
            if len(keep) < share:
                keep += [r[0] for r in await conn.fetch(self._q.FREE_ONES, name, share - len(keep))]
            if not keep:
                return []
            rows = await conn.fetch(self._q.CLAIM, name, owner, keep, [], seconds)
            held = sorted((r for r in rows if r[1]), key=lambda r: r[0])
            return [Claim(r[0], r[2], frozenset(json.loads(r[3])), surplus=r[0] in surplus) for r in held]

        # Repeating it is harmless (a heartbeat and the same claims), even after a lost COMMIT.
        return await self._transaction(work, again=True)

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
        args = (name, owner, partition, position, list(done), handled, skipped, float(lease))
        # Not repeated after a lost connection: the counts would be added twice.
        return bool(await self._pg.run("fetchval", self._q.COMMIT, args, read=False))

    async def release(self, name: str, owner: str, partitions: Sequence[int] | None = None) -> None:
        if partitions is None:
            await self._pg.run("execute", self._q.RELEASE, (name, owner), read=True)  # safe to repeat
        elif partitions:
            await self._pg.run("execute", self._q.RELEASE_SOME, (name, owner, [int(p) for p in partitions]), read=True)

    async def park(self, name: str, change: Change, error: str, attempts: int) -> None:
        old = None if change.old_value is None else encode(change.old_value)
        new = None if change.new_value is None else encode(change.new_value)
        args = (
            name,
            change.revision,
            change.event,
            change.scope,
            change.key,
            old,
            new,
            change.at,
            error,
            attempts,
            change.traceparent,  # kept with the copy: a retried handler still links to the write
        )
        await self._pg.run("execute", self._q.PARK, args, read=True)  # an upsert: safe to repeat

    async def unpark(self, name: str, revision: int) -> None:
        await self._pg.run("execute", self._q.UNPARK, (name, revision), read=True)

    async def take_retries(self, name: str, limit: int) -> list[Parked]:
        # Not repeated after a lost connection: the rows taken would be lost to every worker.
        rows = await self._pg.run("fetch", self._q.TAKE_RETRIES, (name, limit), read=False)
        return [_parked(r, retry=True) for r in sorted(rows, key=lambda r: r[1])]

    async def request_retry(self, name: str) -> int:
        status = await self._pg.run("execute", self._q.REQUEST_RETRY, (name,), read=True)
        return int(status.rsplit(" ", 1)[-1])

    async def status(self) -> list[TriggerStatus]:
        async def work(conn: Any) -> list[TriggerStatus]:
            triggers = await conn.fetch(self._q.STATUS_TRIGGERS)
            positions: dict[str, list[int]] = {}
            for r in await conn.fetch(self._q.STATUS_POSITIONS):
                positions.setdefault(r[0], []).append(r[1])
            owners: dict[str, list[str]] = {}
            for r in await conn.fetch(self._q.STATUS_OWNERS):
                owners.setdefault(r[0], []).append(r[1])
            parked: dict[str, list[Parked]] = {}
            for r in await conn.fetch(self._q.STATUS_PARKED):
                parked.setdefault(r[0], []).append(_parked(r))
            return [
                TriggerStatus(
                    t[0],
                    t[1],
                    tuple(positions.get(t[0], ())),
                    t[2],
                    t[3],
                    tuple(owners.get(t[0], ())),
                    tuple(parked.get(t[0], ())),
                )
                for t in triggers
            ]

        # One snapshot for the four reads: positions, counts and parked rows of the same moment.
        return await self._transaction(work, again=True, isolation="repeatable_read", readonly=True)
