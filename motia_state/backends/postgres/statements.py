"""The Postgres backend's SQL, written once per schema: asyncpg prepares each text per connection (and caches it
when talking to Postgres directly).

Expiry uses the database clock (``now()``), so workers on many hosts agree on what is live. Every table name
is qualified with the store's schema (``schema:``) when it has one: behind a transaction pooler the session's
``search_path`` is not ours to set. ``statements(None)`` (the tables on the search_path) is also readable as
module attributes (``statements.GET``), for the benchmark's raw baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, Final

from ...ops import Filter
from ...sql import CHANGES_TABLE, TABLE_NAME, VERSION_TABLE, qualified, quote_literal
from ...sql.feed import POSTGRES_TRIGGER, TRACE_SETTING
from .filters import compile_filters

__all__ = ["CLEANUP_BATCH", "COMPACT_BATCH", "Statements", "statements"]

LIVE: Final = "(expires_at IS NULL OR expires_at > now())"
# A NULL ttl gives a NULL expiry (NULL * interval is NULL): one statement serves both cases.
EXPIRY: Final = "now() + {ttl}::float8 * interval '1 second'"
# An overwrite of an expired row starts a new entry; an overwrite of a live one keeps its creation time.
CREATED_ON_CONFLICT: Final = (
    "created_at = CASE WHEN m.expires_at IS NULL OR m.expires_at > now() THEN m.created_at ELSE now() END"
)
CLEANUP_BATCH: Final = 5000
COMPACT_BATCH: Final = 5000


def trace(n: int) -> str:
    """The expression putting parameter ``$n`` (a traceparent, or a batch's JSON map) where the change trigger
    reads it at commit (``sql/feed.py``). Transaction-local: behind a transaction pooler nothing outlives the
    statement's own transaction. It must be evaluated, not just written: in an emitted row's column."""
    return f"set_config('{TRACE_SETTING}', ${n}::text, true)"


def traced(dml: str, n: int) -> str:
    """A statement without a result (``dml``, no RETURNING) that also sets the traceparent ``$n``."""
    return f"WITH w AS ({dml}) SELECT {trace(n)}"


class Statements:
    """Every statement of the adapter, for the tables of one schema (None: those on the search_path)."""

    def __init__(self, schema: str | None) -> None:
        self.schema = schema
        T = qualified(TABLE_NAME, schema)  # the tables, named as in the SQL text
        C = qualified(CHANGES_TABLE, schema)
        V = qualified(VERSION_TABLE, schema)

        def changes_after(where: str) -> str:
            # One statement, so one snapshot: the oldest revision kept and the changes read agree (a compaction
            # committing in between cannot make a gap look like nothing). The outer row exists even with no change.
            return f"""
SELECT o.oldest, c.revision, c.event, c.scope, c.key, c.old_value, c.new_value, c.at, c.traceparent
FROM (SELECT min(revision) AS oldest FROM {C}) o
LEFT JOIN LATERAL (
    SELECT revision, event, scope, key, old_value, new_value, at, traceparent FROM {C}
    WHERE revision > $1{where} ORDER BY revision LIMIT $2
) c ON true
ORDER BY c.revision
"""

        self.GET = f"SELECT value FROM {T} WHERE scope = $1 AND key = $2 AND {LIVE}"
        self.GET_ENTRY = f"SELECT value, expires_at FROM {T} WHERE scope = $1 AND key = $2 AND {LIVE}"
        self.GET_BATCH = (
            f"SELECT m.scope, m.key, m.value FROM {T} m"
            " JOIN unnest($1::text[], $2::text[]) AS t(scope, key) ON m.scope = t.scope AND m.key = t.key"
            " WHERE m.expires_at IS NULL OR m.expires_at > now()"
        )

        # set: the old row is locked and read, then the upsert writes. The DO UPDATE only happens when the old
        # row was seen: if another writer inserted the key after this statement's snapshot, nothing is written
        # ("written" is false) and the caller runs the statement again, so the old value returned is always the
        # one this write replaced.
        def set_(extra: str) -> str:
            return f"""
        WITH old AS (
            SELECT value, {LIVE} AS live FROM {T} WHERE scope = $1 AND key = $2 FOR UPDATE
        ), ins AS (
            INSERT INTO {T} AS m (scope, key, value, expires_at, created_at, updated_at)
            VALUES ($1, $2, $3::jsonb, {EXPIRY.format(ttl="$4")}, now(), now())
            ON CONFLICT (scope, key) DO UPDATE
            SET value = excluded.value, expires_at = excluded.expires_at, updated_at = now(), {CREATED_ON_CONFLICT}
            WHERE EXISTS (SELECT 1 FROM old)
            RETURNING 1
        )
        SELECT (SELECT value FROM old WHERE live) AS old, EXISTS (SELECT 1 FROM ins) AS written{extra}
        """

        self.SET = set_("")
        # Traced writes (the calling operation's traceparent, telemetry.OPERATION, set) send these variants, with
        # the traceparent as one more parameter; the others never pay for it.
        self.SET_TRACED = set_(", " + trace(5))

        # The same for distinct keys at once; rows are locked and inserted in one (code point) order so that
        # concurrent batches cannot deadlock each other.
        def set_batch(extra: str) -> str:
            return f"""
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS t(scope, key, value, ttl)
        ), old AS (
            SELECT m.scope, m.key, m.value, (m.expires_at IS NULL OR m.expires_at > now()) AS live
            FROM {T} m JOIN input t ON m.scope = t.scope AND m.key = t.key
            ORDER BY m.scope, m.key
            FOR UPDATE OF m
        ), ins AS (
            INSERT INTO {T} AS m (scope, key, value, expires_at, created_at, updated_at)
            SELECT scope, key, value::jsonb, {EXPIRY.format(ttl="ttl")}, now(), now()
            FROM input ORDER BY scope COLLATE "C", key COLLATE "C"
            ON CONFLICT (scope, key) DO UPDATE
            SET value = excluded.value, expires_at = excluded.expires_at, updated_at = now(), {CREATED_ON_CONFLICT}
            WHERE EXISTS (SELECT 1 FROM old o WHERE o.scope = m.scope AND o.key = m.key)
            RETURNING m.scope, m.key
        )
        SELECT t.scope, t.key, CASE WHEN o.live THEN o.value END AS old, w.key IS NOT NULL AS written{extra}
        FROM input t
        LEFT JOIN old o ON o.scope = t.scope AND o.key = t.key
        LEFT JOIN ins w ON w.scope = t.scope AND w.key = t.key
        """

        self.SET_BATCH = set_batch("")
        # $5: one traceparent for every row, or the JSON map {scope: {key: traceparent}} of a batch of callers.
        self.SET_BATCH_TRACED = set_batch(", " + trace(5))

        self.SET_MANY = f"""
        INSERT INTO {T} AS m (scope, key, value, expires_at, created_at, updated_at)
        SELECT $1::text, t.key, t.value::jsonb, {EXPIRY.format(ttl="$4")}, now(), now()
        FROM unnest($2::text[], $3::text[]) AS t(key, value) ORDER BY t.key COLLATE "C"
        ON CONFLICT (scope, key) DO UPDATE
        SET value = excluded.value, expires_at = excluded.expires_at, updated_at = now(), {CREATED_ON_CONFLICT}
        """
        self.SET_MANY_TRACED = traced(self.SET_MANY, 5)

        self.DELETE = f"DELETE FROM {T} WHERE scope = $1 AND key = $2 RETURNING value, {LIVE} AS live"
        self.DELETE_TRACED = (
            f"WITH d AS ({self.DELETE}) SELECT value, live, {trace(3)} FROM d"  # no row: nothing deleted, no change
        )
        self.DELETE_MANY = f"""
        WITH d AS (DELETE FROM {T} WHERE scope = $1 AND key = ANY($2::text[]) RETURNING expires_at)
        SELECT count(*) FROM d WHERE {LIVE}
        """
        # One row whatever was deleted: expired rows removed record changes too.
        self.DELETE_MANY_TRACED = f"""
        WITH d AS (DELETE FROM {T} WHERE scope = $1 AND key = ANY($2::text[]) RETURNING expires_at)
        SELECT (SELECT count(*) FROM d WHERE {LIVE}), {trace(3)}
        """
        self.CLEAR = (
            f"WITH d AS (DELETE FROM {T} WHERE scope = $1 RETURNING expires_at) SELECT count(*) FROM d WHERE {LIVE}"
        )
        self.CLEAR_TRACED = (
            f"WITH d AS (DELETE FROM {T} WHERE scope = $1 RETURNING expires_at)"
            f" SELECT (SELECT count(*) FROM d WHERE {LIVE}), {trace(2)}"
        )
        # ctid = ANY(ARRAY(...)) is a TID scan: each batch touches only the rows it deletes. SKIP LOCKED lets
        # many cleaners run at once, each on different rows.
        self.CLEANUP = f"""
        DELETE FROM {T} WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM {T} WHERE expires_at <= now() LIMIT {CLEANUP_BATCH} FOR UPDATE SKIP LOCKED
        )) AND expires_at <= now()
        """
        # The same, answering the count as a row (fetchval) rather than as the command status.
        self.CLEANUP_TRACED = (
            f"WITH d AS ({self.CLEANUP.strip()} RETURNING 1) SELECT (SELECT count(*) FROM d), {trace(1)}"
        )

        self.GET_MANY = f"SELECT key, value FROM {T} WHERE scope = $1 AND key = ANY($2::text[]) AND {LIVE}"
        self.KEYS = f"SELECT key FROM {T} WHERE scope = $1 AND {LIVE}"
        self.VALUES = f"SELECT value FROM {T} WHERE scope = $1 AND {LIVE} ORDER BY key"
        # The same values as one JSON array text (NULL for none): one string to send and one json.loads, instead
        # of a row and a decode per entry (a third of a list's time). jsonb's text, as a row of VALUES reads it.
        self.VALUES_ARRAY = f"SELECT json_agg(value ORDER BY key)::text FROM {T} WHERE scope = $1 AND {LIVE}"
        self.VALUES_ARRAYS = (
            f"SELECT scope, json_agg(value ORDER BY key)::text FROM {T}"
            f" WHERE scope = ANY($1::text[]) AND {LIVE} GROUP BY scope"
        )
        self.GROUPS = f"SELECT DISTINCT scope FROM {T} WHERE {LIVE}"

        # A page of scopes (the state browser), in code point order (the column's COLLATE "C").
        def scopes_page(after: str) -> str:
            # A skip scan: each step is one descent of the primary key index to the next scope, so a scope of a
            # million keys costs what a scope of one does (a GROUP BY would read every row of it), and a scope is
            # kept when it holds a live row. Postgres runs the recursion only as far as the LIMIT pulls it; no
            # ORDER BY above it (that would run it to the end first): the steps come in scope order. The liveness
            # test is a scalar subquery so that it stays a filter on each step (an EXISTS may become a join).
            return f"""
WITH RECURSIVE s(scope) AS (
    (SELECT scope FROM {T}{after} ORDER BY scope LIMIT 1)
    UNION ALL
    SELECT (SELECT m.scope FROM {T} m WHERE m.scope > s.scope ORDER BY m.scope LIMIT 1) FROM s
    WHERE s.scope IS NOT NULL
)
SELECT scope FROM s
WHERE scope IS NOT NULL AND (SELECT true FROM {T} m WHERE m.scope = s.scope AND {LIVE} LIMIT 1)
LIMIT $1
"""

        #: $1 the limit; $2 the scope the page starts after.
        self.SCOPES_FIRST = scopes_page("")
        self.SCOPES_AFTER = scopes_page(" WHERE scope > $2")

        # With a search ($1 limit, $2 the text, $3 after): the index's entries in order, filtered by strpos (a plain
        # substring: no LIKE pattern), then the same liveness test per matching scope, until the page is full. Few
        # scopes match, so this reads index entries (no table rows) where the skip scan would take a descent per
        # scope passed: at worst every entry of the index, one pass.
        def search_page(after: str) -> str:
            return f"""
SELECT d.scope FROM (SELECT DISTINCT scope FROM {T} WHERE strpos(scope, $2) > 0{after} ORDER BY scope) d
WHERE (SELECT true FROM {T} m WHERE m.scope = d.scope AND {LIVE} LIMIT 1)
ORDER BY d.scope LIMIT $1
"""

        self.SCOPES_SEARCH = search_page("")
        self.SCOPES_SEARCH_AFTER = search_page(" AND scope > $3")

        self.TTL = (
            f"SELECT EXTRACT(EPOCH FROM expires_at - now())::float8 AS left FROM {T}"
            f" WHERE scope = $1 AND key = $2 AND {LIVE}"
        )

        # update: optimistic first (read with the row version, write only if the version is unchanged: two round
        # trips, no transaction), then, after a lost race, a transaction holding the row lock.
        self.READ_VERSIONED = f"SELECT value, {LIVE} AS live, xmin FROM {T} WHERE scope = $1 AND key = $2"
        self.CAS_LIVE = (
            f"UPDATE {T} SET value = $3::jsonb, updated_at = now()"
            f" WHERE scope = $1 AND key = $2 AND xmin = $4::xid AND {LIVE} RETURNING 1"
        )
        self.CAS_EXPIRED = (
            f"UPDATE {T} SET value = $3::jsonb, expires_at = {EXPIRY.format(ttl='$5')}, created_at = now(),"
            f" updated_at = now() WHERE scope = $1 AND key = $2 AND xmin = $4::xid RETURNING 1"
        )
        self.INSERT_NEW = (
            f"INSERT INTO {T} (scope, key, value, expires_at, created_at, updated_at)"
            f" VALUES ($1, $2, $3::jsonb, {EXPIRY.format(ttl='$4')}, now(), now())"
            " ON CONFLICT (scope, key) DO NOTHING RETURNING 1"
        )
        self.READ_LOCKED = f"SELECT value, {LIVE} AS live FROM {T} WHERE scope = $1 AND key = $2 FOR UPDATE"
        self.WRITE_LOCKED_LIVE = f"UPDATE {T} SET value = $3::jsonb, updated_at = now() WHERE scope = $1 AND key = $2"
        self.WRITE_LOCKED_EXPIRED = (
            f"UPDATE {T} SET value = $3::jsonb, expires_at = {EXPIRY.format(ttl='$4')}, created_at = now(),"
            " updated_at = now() WHERE scope = $1 AND key = $2"
        )
        # Traced: the same answer (1, or no row when nothing was written), the traceparent set when written.
        self.CAS_LIVE_TRACED = f"WITH w AS ({self.CAS_LIVE}) SELECT 1, {trace(5)} FROM w"
        self.CAS_EXPIRED_TRACED = f"WITH w AS ({self.CAS_EXPIRED}) SELECT 1, {trace(6)} FROM w"
        self.INSERT_NEW_TRACED = f"WITH w AS ({self.INSERT_NEW}) SELECT 1, {trace(5)} FROM w"
        # The locked update is a transaction of several statements: its first one sets the traceparent.
        self.TRACE = f"SELECT {trace(1)}"

        # The head of an items() query: the conditions, ORDER BY and LIMIT are appended to it.
        self.ITEMS = f"SELECT scope, key, value, expires_at FROM {T} WHERE {LIVE}"

        # The schema version and whether the change trigger fires (None: no trigger), in the one query of a connect.
        # Whether the change trigger fires (None: no trigger), and the session's plan_cache_mode: when it is not
        # the one sent at startup, a pooler dropped the setting (the adapter then runs in pooler mode).
        enabled = (
            f"(SELECT tgenabled <> 'D' FROM pg_trigger"
            f" WHERE tgrelid = to_regclass({quote_literal(T)}) AND tgname = '{POSTGRES_TRIGGER}')"
        )
        plan_mode = "current_setting('plan_cache_mode')"
        self.TRIGGER_ENABLED = f"SELECT {enabled}, {plan_mode}"
        # The schema version too, in the one query of a connect.
        self.SCHEMA_VERSION = f"SELECT version_num, {enabled}, {plan_mode} FROM {V}"

        # --- the change feed (SPEC §10) ---------------------------------------------------------------------------

        # Revisions are taken at commit, in commit order (see sql/feed.py), so the highest committed revision is
        # where a watch starts; the sequence is never read (an in-flight commit may hold a value not yet visible).
        # A scope without changes starts at the floor: the revision just below the oldest kept (compaction never
        # deletes the newest row, so the floor is never above a change still to come).
        self.REVISION = f"SELECT coalesce(max(revision), 0) FROM {C}"
        self.REVISION_OF_SCOPE = (
            f"SELECT coalesce((SELECT max(revision) FROM {C} WHERE scope = $1), (SELECT min(revision) - 1 FROM {C}), 0)"
        )

        #: The changes after $1, at most $2: of every scope, of scope $3, of scope $3 and key $4.
        self.CHANGES_AFTER = changes_after("")
        self.CHANGES_AFTER_SCOPE = changes_after(" AND scope = $3")
        self.CHANGES_AFTER_KEY = changes_after(" AND scope = $3 AND key = $4")

        # A key's history, newest first ($1 scope, $2 key, $3 limit, $4 the revision to stay below): a backward
        # range of the history index (scope, key, revision), however long the store's or the key's history.
        history = f"SELECT revision, event, scope, key, old_value, new_value, at, traceparent FROM {C}"
        self.KEY_HISTORY = f"{history} WHERE scope = $1 AND key = $2 ORDER BY revision DESC LIMIT $3"
        self.KEY_HISTORY_BEFORE = (
            f"{history} WHERE scope = $1 AND key = $2 AND revision < $4 ORDER BY revision DESC LIMIT $3"
        )

        # The oldest COMPACT_BATCH rows by revision (a bounded index scan, whatever the table holds), of which those
        # older than the retention ($1 seconds) go; never the newest row, so "oldest kept - 1" stays a correct floor
        # (revision() of a scope without changes). SKIP LOCKED: cleaners running at once take different rows and
        # never wait for (nor deadlock with) each other.
        self.COMPACT = f"""
        DELETE FROM {C} WHERE revision = ANY(ARRAY(
            SELECT revision FROM (
                SELECT revision, at FROM {C} ORDER BY revision LIMIT {COMPACT_BATCH} FOR UPDATE SKIP LOCKED
            ) s WHERE at < now() - $1::float8 * interval '1 second'
        )) AND revision < (SELECT max(revision) FROM {C})
        """

    def items_query(
        self, scope: str | None, after: str | None, filters: Sequence[Filter], limit: int | None
    ) -> tuple[str, list[Any], list[Filter]]:
        """An items() query, its arguments, and the filters ``match`` must decide (then no LIMIT in SQL)."""
        where: list[str] = []
        args: list[Any] = []
        if scope is not None:
            args.append(scope)
            where.append("scope = $1")
        if after is not None:
            # The column's COLLATE "C" wins over the parameter's default collation: code point order, and
            # the primary key index serves the range together with ORDER BY key and LIMIT.
            args.append(after)
            where.append(f"key > ${len(args)}")
        conds, params, recheck = compile_filters(filters, len(args) + 1)
        where.extend(conds)
        args.extend(params)
        query = self.ITEMS + "".join(f" AND {w}" for w in where) + " ORDER BY scope, key"
        if limit is not None and not recheck:
            args.append(limit)
            query += f" LIMIT ${len(args)}"
        return query, args, recheck


@cache
def statements(schema: str | None) -> Statements:
    """The statements of the store in ``schema`` (built once per schema and process)."""
    return Statements(schema)


def __getattr__(name: str) -> Any:
    # statements.GET & co: the search_path store's text (the benchmark's raw baseline sends exactly it).
    found = statements(None).__dict__.get(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return found
