"""Create the tables of durable triggers: progress, partition leases, workers, parked changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")
_COUNT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the four trigger tables (empty)."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    op.create_table(
        "motia_state_triggers",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("start_revision", _COUNT, nullable=False),
        sa.Column("partitions", sa.Integer(), nullable=False),
        sa.Column("handled", _COUNT, server_default=sa.text("0"), nullable=False),
        sa.Column("skipped", _COUNT, server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        schema=schema,
    )
    op.create_table(
        "motia_state_trigger_partitions",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", _COUNT, nullable=False),
        sa.Column("done", _JSON, nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("name", "partition"),
        schema=schema,
    )
    op.create_table(
        "motia_state_trigger_workers",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("alive_until", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", "owner"),
        schema=schema,
    )
    op.create_table(
        "motia_state_trigger_parked",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("revision", _COUNT, autoincrement=False, nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("scope", _NAME, nullable=False),
        sa.Column("key", _NAME, nullable=False),
        sa.Column("old_value", _JSON, nullable=True),
        sa.Column("new_value", _JSON, nullable=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("parked_at", _TIME, server_default=sa.func.now(), nullable=False),
        sa.Column("retry", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("name", "revision"),
        schema=schema,
    )


def downgrade() -> None:
    """Drop the trigger tables (every trigger's progress and parked changes with them)."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    for table in (
        "motia_state_trigger_parked",
        "motia_state_trigger_workers",
        "motia_state_trigger_partitions",
        "motia_state_triggers",
    ):
        op.drop_table(table, schema=schema)
