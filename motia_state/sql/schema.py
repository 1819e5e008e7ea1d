"""The one SQL table (SPEC §7), shared by the SQL adapters and the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from . import CHANGES_TABLE, TABLE_NAME, VERSION_TABLE

__all__ = ["CHANGES_TABLE", "TABLE_NAME", "VERSION_TABLE", "changes_table", "metadata", "state_table"]

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
    # A key's history.
    Index("ix_motia_state_changes_scope_key", "scope", "key", "revision"),
    sqlite_autoincrement=True,
)
# A scope's changes after a revision (watch(scope), revision(scope)). Postgres only: SQLite reads a scope's
# changes by walking the primary key, and there this index would cost every write a quarter of its speed.
Index("ix_motia_state_changes_scope", changes_table.c.scope, changes_table.c.revision).ddl_if(dialect="postgresql")
