"""What the SQL backends share: table names, the schema (``schema``), migrations (``migrate``) and how a
store URL becomes a database connection (``connect``). Importing this package loads no SQLAlchemy.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHANGES_TABLE",
    "HEAD_REVISION",
    "TABLES",
    "TABLE_NAME",
    "TRIGGERS_TABLE",
    "TRIGGER_PARKED_TABLE",
    "TRIGGER_PARTITIONS_TABLE",
    "TRIGGER_TABLES",
    "TRIGGER_WORKERS_TABLE",
    "VERSION_TABLE",
]

TABLE_NAME: Final = "motia_state"
CHANGES_TABLE: Final = "motia_state_changes"
TRIGGERS_TABLE: Final = "motia_state_triggers"
TRIGGER_PARTITIONS_TABLE: Final = "motia_state_trigger_partitions"
TRIGGER_WORKERS_TABLE: Final = "motia_state_trigger_workers"
TRIGGER_PARKED_TABLE: Final = "motia_state_trigger_parked"
TRIGGER_TABLES: Final = (TRIGGERS_TABLE, TRIGGER_PARTITIONS_TABLE, TRIGGER_WORKERS_TABLE, TRIGGER_PARKED_TABLE)
#: Every table the migrations create (not the Alembic version table).
TABLES: Final = (TABLE_NAME, CHANGES_TABLE, *TRIGGER_TABLES)
VERSION_TABLE: Final = "motia_state_alembic_version"
#: The newest migration shipped with this package. A test checks it against the Alembic scripts, so that
#: connecting to an up-to-date store can compare one string without importing Alembic.
HEAD_REVISION: Final = "0003"
