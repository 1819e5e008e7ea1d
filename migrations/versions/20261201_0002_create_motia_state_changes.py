"""Create motia_state_changes and the triggers recording every change of motia_state (the change feed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# The trigger text is imported, not copied: the adapters re-create the same triggers when a store is switched
# from changes: off back to on. Editing it in motia_state.sql.feed needs a new revision re-creating them, and
# this revision keeps making the text of its time (Postgres: ``traceparent=False``, see revision 0004).
from motia_state.sql.feed import SQLITE_CREATE, SQLITE_DROP, postgres_create, postgres_drop

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    """Create the changes table, its history index, and the triggers on motia_state."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    op.create_table(
        "motia_state_changes",
        sa.Column("revision", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("scope", _NAME, nullable=False),
        sa.Column("key", _NAME, nullable=False),
        sa.Column("old_value", _JSON, nullable=True),
        sa.Column("new_value", _JSON, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("revision"),
        sqlite_autoincrement=True,
        schema=schema,
    )
    op.create_index(
        "ix_motia_state_changes_scope_key",
        "motia_state_changes",
        ["scope", "key", "revision"],
        unique=False,
        schema=schema,
    )
    postgres = op.get_context().dialect.name == "postgresql"
    if postgres:  # a scope's changes after a revision; SQLite walks the primary key instead (cheaper writes)
        op.create_index(
            "ix_motia_state_changes_scope", "motia_state_changes", ["scope", "revision"], unique=False, schema=schema
        )
    statements = postgres_create(schema, traceparent=False) if postgres else SQLITE_CREATE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    """Drop the triggers and the changes table (the entries in motia_state are kept)."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    postgres = op.get_context().dialect.name == "postgresql"
    for statement in postgres_drop(schema) if postgres else SQLITE_DROP:
        op.execute(statement)
    if postgres:
        op.drop_index("ix_motia_state_changes_scope", table_name="motia_state_changes", schema=schema)
    op.drop_index("ix_motia_state_changes_scope_key", table_name="motia_state_changes", schema=schema)
    op.drop_table("motia_state_changes", schema=schema)
