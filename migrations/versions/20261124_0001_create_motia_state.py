"""Create the motia_state table and its expiry index.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here rather than imported from motia_state.schema: a migration is a frozen snapshot, and
# later edits of the model must come with a new revision (autogenerate then sees the difference).
_NAME = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    """Create the table exactly as motia_state.schema defines it."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    op.create_table(
        "motia_state",
        sa.Column("scope", _NAME, nullable=False),
        sa.Column("key", _NAME, nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
        schema=schema,
    )
    op.create_index(
        "ix_motia_state_expires_at",
        "motia_state",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
        schema=schema,
    )


def downgrade() -> None:
    """Drop the table (and with it every stored entry)."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    op.drop_index("ix_motia_state_expires_at", table_name="motia_state", schema=schema)
    op.drop_table("motia_state", schema=schema)
