"""The Postgres backend's SQL, written once: asyncpg prepares each text per connection and caches it.

Expiry uses the database clock (``now()``), so workers on many hosts agree on what is live.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ...ops import Filter
from ...sql import CHANGES_TABLE, TABLE_NAME, VERSION_TABLE
from ...sql.feed import POSTGRES_TRIGGER
from .filters import compile_filters

T: Final = TABLE_NAME
LIVE: Final = "(expires_at IS NULL OR expires_at > now())"
# A NULL ttl gives a NULL expiry (NULL * interval is NULL): one statement serves both cases.
EXPIRY: Final = "now() + {ttl}::float8 * interval '1 second'"
# An overwrite of an expired row starts a new entry; an overwrite of a live one keeps its creation time.
CREATED_ON_CONFLICT: Final = (
    "created_at = CASE WHEN m.expires_at IS NULL OR m.expires_at > now() THEN m.created_at ELSE now() END"
)

GET: Final = f"SELECT value FROM {T} WHERE scope = $1 AND key = $2 AND {LIVE}"
GET_ENTRY: Final = f"SELECT value, expires_at FROM {T} WHERE scope = $1 AND key = $2 AND {LIVE}"
GET_BATCH: Final = (
    f"SELECT m.scope, m.key, m.value FROM {T} m"
    " JOIN unnest($1::text[], $2::text[]) AS t(scope, key) ON m.scope = t.scope AND m.key = t.key"
    " WHERE m.expires_at IS NULL OR m.expires_at > now()"
)

# set: the old row is locked and read, then the upsert writes. The DO UPDATE only happens when the old
# row was seen: if another writer inserted the key after this statement's snapshot, nothing is written
# ("written" is false) and the caller runs the statement again, so the old value returned is always the
# one this write replaced.
SET: Final = f"""
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
SELECT (SELECT value FROM old WHERE live) AS old, EXISTS (SELECT 1 FROM ins) AS written
"""

# The same for distinct keys at once; rows are locked and inserted in one (code point) order so that
# concurrent batches cannot deadlock each other.
SET_BATCH: Final = f"""
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
SELECT t.scope, t.key, CASE WHEN o.live THEN o.value END AS old, w.key IS NOT NULL AS written
FROM input t
LEFT JOIN old o ON o.scope = t.scope AND o.key = t.key
LEFT JOIN ins w ON w.scope = t.scope AND w.key = t.key
"""

SET_MANY: Final = f"""
INSERT INTO {T} AS m (scope, key, value, expires_at, created_at, updated_at)
SELECT $1::text, t.key, t.value::jsonb, {EXPIRY.format(ttl="$4")}, now(), now()
FROM unnest($2::text[], $3::text[]) AS t(key, value) ORDER BY t.key COLLATE "C"
ON CONFLICT (scope, key) DO UPDATE
SET value = excluded.value, expires_at = excluded.expires_at, updated_at = now(), {CREATED_ON_CONFLICT}
"""

DELETE: Final = f"DELETE FROM {T} WHERE scope = $1 AND key = $2 RETURNING value, {LIVE} AS live"
DELETE_MANY: Final = f"""
WITH d AS (DELETE FROM {T} WHERE scope = $1 AND key = ANY($2::text[]) RETURNING expires_at)
SELECT count(*) FROM d WHERE {LIVE}
"""
CLEAR: Final = f"WITH d AS (DELETE FROM {T} WHERE scope = $1 RETURNING expires_at) SELECT count(*) FROM d WHERE {LIVE}"
CLEANUP_BATCH: Final = 5000
# ctid = ANY(ARRAY(...)) is a TID scan: each batch touches only the rows it deletes. SKIP LOCKED lets
# many cleaners run at once, each on different rows.
CLEANUP: Final = f"""
DELETE FROM {T} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {T} WHERE expires_at <= now() LIMIT {CLEANUP_BATCH} FOR UPDATE SKIP LOCKED
)) AND expires_at <= now()
"""

GET_MANY: Final = f"SELECT key, value FROM {T} WHERE scope = $1 AND key = ANY($2::text[]) AND {LIVE}"
KEYS: Final = f"SELECT key FROM {T} WHERE scope = $1 AND {LIVE}"
VALUES: Final = f"SELECT value FROM {T} WHERE scope = $1 AND {LIVE} ORDER BY key"
GROUPS: Final = f"SELECT DISTINCT scope FROM {T} WHERE {LIVE}"
TTL: Final = (
    f"SELECT EXTRACT(EPOCH FROM expires_at - now())::float8 AS left FROM {T} WHERE scope = $1 AND key = $2 AND {LIVE}"
)

# update: optimistic first (read with the row version, write only if the version is unchanged: two round
# trips, no transaction), then, after a lost race, a transaction holding the row lock.
READ_VERSIONED: Final = f"SELECT value, {LIVE} AS live, xmin FROM {T} WHERE scope = $1 AND key = $2"
CAS_LIVE: Final = (
    f"UPDATE {T} SET value = $3::jsonb, updated_at = now()"
    f" WHERE scope = $1 AND key = $2 AND xmin = $4::xid AND {LIVE} RETURNING 1"
)
CAS_EXPIRED: Final = (
    f"UPDATE {T} SET value = $3::jsonb, expires_at = {EXPIRY.format(ttl='$5')}, created_at = now(),"
    f" updated_at = now() WHERE scope = $1 AND key = $2 AND xmin = $4::xid RETURNING 1"
)
INSERT_NEW: Final = (
    f"INSERT INTO {T} (scope, key, value, expires_at, created_at, updated_at)"
    f" VALUES ($1, $2, $3::jsonb, {EXPIRY.format(ttl='$4')}, now(), now())"
    " ON CONFLICT (scope, key) DO NOTHING RETURNING 1"
)
READ_LOCKED: Final = f"SELECT value, {LIVE} AS live FROM {T} WHERE scope = $1 AND key = $2 FOR UPDATE"
WRITE_LOCKED_LIVE: Final = f"UPDATE {T} SET value = $3::jsonb, updated_at = now() WHERE scope = $1 AND key = $2"
WRITE_LOCKED_EXPIRED: Final = (
    f"UPDATE {T} SET value = $3::jsonb, expires_at = {EXPIRY.format(ttl='$4')}, created_at = now(),"
    " updated_at = now() WHERE scope = $1 AND key = $2"
)

# The head of an items() query: the conditions, ORDER BY and LIMIT are appended to it.
ITEMS: Final = f"SELECT scope, key, value, expires_at FROM {T} WHERE {LIVE}"

# The schema version and whether the change trigger fires (None: no trigger), in the one query of a connect.
TRIGGER_ENABLED: Final = (
    f"SELECT (SELECT tgenabled <> 'D' FROM pg_trigger"
    f" WHERE tgrelid = to_regclass('{T}') AND tgname = '{POSTGRES_TRIGGER}')"
)
SCHEMA_VERSION: Final = f"SELECT version_num, ({TRIGGER_ENABLED}) FROM {VERSION_TABLE}"

# --- the change feed (SPEC §10) ---------------------------------------------------------------------------

C: Final = CHANGES_TABLE
# Revisions are taken at commit, in commit order (see sql/feed.py), so the highest committed revision is
# where a watch starts; the sequence is never read (an in-flight commit may hold a value not yet visible).
# A scope without changes starts at the floor: the revision just below the oldest kept (compaction never
# deletes the newest row, so the floor is never above a change still to come).
REVISION: Final = f"SELECT coalesce(max(revision), 0) FROM {C}"
REVISION_OF_SCOPE: Final = (
    f"SELECT coalesce((SELECT max(revision) FROM {C} WHERE scope = $1), (SELECT min(revision) - 1 FROM {C}), 0)"
)


def _changes_after(where: str) -> str:
    # One statement, so one snapshot: the oldest revision kept and the changes read agree (a compaction
    # committing in between cannot make a gap look like nothing). The outer row exists even with no change.
    return f"""
SELECT o.oldest, c.revision, c.event, c.scope, c.key, c.old_value, c.new_value, c.at
FROM (SELECT min(revision) AS oldest FROM {C}) o
LEFT JOIN LATERAL (
    SELECT revision, event, scope, key, old_value, new_value, at FROM {C}
    WHERE revision > $1{where} ORDER BY revision LIMIT $2
) c ON true
ORDER BY c.revision
"""


#: The changes after $1, at most $2: of every scope, of scope $3, of scope $3 and key $4.
CHANGES_AFTER: Final = _changes_after("")
CHANGES_AFTER_SCOPE: Final = _changes_after(" AND scope = $3")
CHANGES_AFTER_KEY: Final = _changes_after(" AND scope = $3 AND key = $4")

COMPACT_BATCH: Final = 5000
# The oldest COMPACT_BATCH rows by revision (a bounded index scan, whatever the table holds), of which those
# older than the retention ($1 seconds) go; never the newest row, so "oldest kept - 1" stays a correct floor
# (revision() of a scope without changes). SKIP LOCKED: cleaners running at once take different rows and
# never wait for (nor deadlock with) each other.
COMPACT: Final = f"""
DELETE FROM {C} WHERE revision = ANY(ARRAY(
    SELECT revision FROM (
        SELECT revision, at FROM {C} ORDER BY revision LIMIT {COMPACT_BATCH} FOR UPDATE SKIP LOCKED
    ) s WHERE at < now() - $1::float8 * interval '1 second'
)) AND revision < (SELECT max(revision) FROM {C})
"""


def items_query(
    scope: str | None, after: str | None, filters: Sequence[Filter], limit: int | None
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
    query = ITEMS + "".join(f" AND {w}" for w in where) + " ORDER BY scope, key"
    if limit is not None and not recheck:
        args.append(limit)
        query += f" LIMIT ${len(args)}"
    return query, args, recheck
