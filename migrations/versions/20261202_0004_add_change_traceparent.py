"""Add the writer's trace context to every recorded change: a nullable ``traceparent`` column.

On ``motia_state_changes`` and on ``motia_state_trigger_parked`` (a parked change keeps it). Changes recorded
before this revision, and writes made with plain SQL, have NULL. Postgres: the trigger function is replaced
(``CREATE OR REPLACE FUNCTION``, the trigger itself stays) by the one reading a traced write's setting.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Imported, not copied, as in 0002: the text the adapters use is the text this revision installs (the
# default ``traceparent=True``); the downgrade puts back 0002's (``traceparent=False``).
from motia_state.sql.feed import postgres_create

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("motia_state_changes", "motia_state_trigger_parked")


def upgrade() -> None:
    """Add the columns (NULL for what is already there), then the function that fills the changes' one."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    for table in _TABLES:
        op.add_column(table, sa.Column("traceparent", sa.Text(), nullable=True), schema=schema)
    if op.get_context().dialect.name == "postgresql":
        function, _trigger = postgres_create(schema)
        op.execute(function)


def downgrade() -> None:
    """Put back the function of 0002 (which names no traceparent), then drop the columns and what they hold."""
    schema = op.get_context().version_table_schema  # None: the search_path's schema
    if op.get_context().dialect.name == "postgresql":
        function, _trigger = postgres_create(schema, traceparent=False)
        op.execute(function)
    for table in _TABLES:
        # SQLite >= 3.35 drops a column in place (the table is not copied: its AUTOINCREMENT counter stays).
        op.drop_column(table, "traceparent", schema=schema)
