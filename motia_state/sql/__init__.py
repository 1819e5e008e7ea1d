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
    "check_schema",
    "qualified",
    "quote_ident",
    "quote_literal",
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
HEAD_REVISION: Final = "0004"


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (exactly as written, case kept)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def qualified(table: str, schema: str | None) -> str:
    """``table`` in ``schema``; unqualified (the connection's search_path) when ``schema`` is None.

    Every statement names its schema itself: behind a transaction pooler a session's ``search_path``
    cannot be relied on.
    """
    return table if schema is None else f"{quote_ident(schema)}.{table}"


def check_schema(value: object) -> str:
    """A Postgres schema name: non-empty text of at most 63 bytes, no U+0000, not ``pg_*`` (reserved)."""
    if type(value) is not str or not value:
        raise ValueError("a non-empty schema name")
    if "\x00" in value or len(value.encode()) > 63:
        raise ValueError("a schema name of at most 63 bytes without U+0000")
    if value.lower().startswith("pg_"):
        raise ValueError("a schema name not starting with pg_ (reserved by Postgres)")
    return value
