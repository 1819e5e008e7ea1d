"""The one SQL table (SPEC §7), shared by the SQL adapters and the Alembic migrations."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, MetaData, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB

from . import TABLE_NAME, VERSION_TABLE

__all__ = ["TABLE_NAME", "VERSION_TABLE", "metadata", "state_table"]

metadata = MetaData()

# COLLATE "C" on Postgres: keys sort by code point whatever the database collation, and the primary
# key index serves ORDER BY key. SQLite's default BINARY collation already sorts by code point.
_name = Text().with_variant(Text(collation="C"), "postgresql")

state_table = Table(
    TABLE_NAME,
    metadata,
    Column("scope", _name, primary_key=True),
    Column("key", _name, primary_key=True),
    # TEXT on SQLite: a column declared JSON gets NUMERIC affinity there, which rewrites a top-level
    # number's JSON text ('1.0' -> 1, 2**90 -> REAL); TEXT keeps it byte-exact, json_*() functions still work.
    Column("value", JSON().with_variant(JSONB(), "postgresql").with_variant(Text(), "sqlite"), nullable=False),
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
