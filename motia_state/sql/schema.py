"""The one SQL table (SPEC §7), shared by the SQL adapters and the Alembic migrations."""

from __future__ import annotations

from functools import cache

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from . import (
    CHANGES_TABLE,
    TABLE_NAME,
    TRIGGER_PARKED_TABLE,
    TRIGGER_PARTITIONS_TABLE,
    TRIGGER_WORKERS_TABLE,
    TRIGGERS_TABLE,
    VERSION_TABLE,
)

__all__ = [
    "CHANGES_TABLE",
    "TABLE_NAME",
    "VERSION_TABLE",
    "changes_table",
    "metadata",
    "metadata_for",
    "state_table",
    "trigger_parked_table",
    "trigger_partitions_table",
    "trigger_workers_table",
    "triggers_table",
]

metadata = MetaData()

# COLLATE "C" on Postgres: keys sort by code point whatever the database collation, and the primary
# key index serves ORDER BY key. SQLite's default BINARY collation already sorts by code point.
_name = Text().with_variant(Text(collation="C"), "postgresql")
# TEXT on SQLite: a column declared JSON gets NUMERIC affinity there, which rewrites a top-level
# number's JSON text ('1.0' -> 1, 2**90 -> REAL); TEXT keeps it byte-exact, json_*() functions still work.
_json = JSON().with_variant(JSONB(), "postgresql").with_variant(Text(), "sqlite")

state_table = Table(
    TABLE_NAME,
    metadata,
    Column("scope", _name, primary_key=True),
    Column("key", _name, primary_key=True),
    Column("value", _json, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Serves cleanup() and the expiry filter; only rows that can expire are indexed.
    Index(
        "ix_motia_state_expires_at",
        "expires_at",
        postgresql_where=text("expires_at IS NOT NULL"),
        sqlite_where=text("expires_at IS NOT NULL"),
    ),
)

# The change feed (SPEC §10). Rows are written only by database triggers on motia_state (see
# motia_state.sql.feed), so plain-SQL writes are recorded too. ``revision`` is a bigserial on Postgres (taken
# at commit, in commit order) and an AUTOINCREMENT rowid on SQLite (never reused, even after compaction).
changes_table = Table(
    CHANGES_TABLE,
    metadata,
    Column("revision", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("event", Text(), nullable=False),
    Column("scope", _name, nullable=False),
    Column("key", _name, nullable=False),
    Column("old_value", _json, nullable=True),
    Column("new_value", _json, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The W3C traceparent of the traced operation that made the change (migration 0004); NULL otherwise.
    Column("traceparent", Text(), nullable=True),
    # A key's history.
    Index("ix_motia_state_changes_scope_key", "scope", "key", "revision"),
    sqlite_autoincrement=True,
)
# A scope's changes after a revision (watch(scope), revision(scope)). Postgres only: SQLite reads a scope's
# changes by walking the primary key, and there this index would cost every write a quarter of its speed.
Index("ix_motia_state_changes_scope", changes_table.c.scope, changes_table.c.revision).ddl_if(dialect="postgresql")

# Durable triggers (SPEC §11): each trigger's progress, its partitions' leases, the live workers, and the
# changes whose handler kept failing. Written only by the trigger stores of the SQL adapters.
_count = BigInteger().with_variant(Integer(), "sqlite")

triggers_table = Table(
    TRIGGERS_TABLE,
    metadata,
    Column("name", _name, primary_key=True),
    Column("start_revision", _count, nullable=False),
    Column("partitions", Integer(), nullable=False),
    Column("handled", _count, nullable=False, server_default=text("0")),
    Column("skipped", _count, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

trigger_partitions_table = Table(
    TRIGGER_PARTITIONS_TABLE,
    metadata,
    Column("name", _name, primary_key=True),
    Column("partition", Integer(), primary_key=True, autoincrement=False),
    # Every change of the partition at or below it is done; ``done`` lists the ones done above it.
    Column("position", _count, nullable=False),
    Column("done", _json, nullable=False),
    Column("owner", Text(), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
)

trigger_workers_table = Table(
    TRIGGER_WORKERS_TABLE,
    metadata,
    Column("name", _name, primary_key=True),
    Column("owner", Text(), primary_key=True),
    Column("alive_until", DateTime(timezone=True), nullable=False),
)

trigger_parked_table = Table(
    TRIGGER_PARKED_TABLE,
    metadata,
    Column("name", _name, primary_key=True),
    Column("revision", _count, primary_key=True, autoincrement=False),
    Column("event", Text(), nullable=False),
    Column("scope", _name, nullable=False),
    Column("key", _name, nullable=False),
    Column("old_value", _json, nullable=True),
    Column("new_value", _json, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("error", Text(), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("retry", Boolean(), nullable=False, server_default=false()),
    Column("traceparent", Text(), nullable=True),  # the parked change's (migration 0004)
)


@cache
def metadata_for(schema: str | None) -> MetaData:
    """The same tables in ``schema`` (None: :data:`metadata` itself, on the search_path)."""
    if schema is None:
        return metadata
    copy = MetaData(schema=schema)
    for table in metadata.sorted_tables:
        table.to_metadata(copy, schema=schema)
    return copy
