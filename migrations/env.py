"""Alembic environment of motia-state: only the ``motia_state`` table, versioned in its own table.

A Postgres store in its own schema (``?schema=`` in the URL, ``-x schema=...``, or the caller's
``attributes["schema"]``): the schema is created when missing, and the tables and the version table live
in it; autogenerate compares that schema only.

Three ways in:
- ``alembic upgrade head`` from the repo root: URL from ``-x url=...`` or MOTIA_STATE_URL, async engine.
- :mod:`motia_state.migrate` (programmatic): it passes a live connection in ``config.attributes["connection"]``
  (already inside the caller's event loop, so no new loop is started here) or a URL in ``attributes["url"]``.
- ``--sql`` (offline): SQL text for a DBA, from the URL's dialect.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from motia_state.sql import VERSION_TABLE, quote_ident
from motia_state.sql.connect import engine_args, sqlalchemy_url
from motia_state.sql.migrate import include_name_for, include_object, split_schema
from motia_state.sql.schema import metadata_for
from motia_state.urls import StoreURL

config = context.config

# Only the command line configures logging: a host application calling us keeps its own logging setup.
if config.config_file_name is not None and "connection" not in config.attributes and "url" not in config.attributes:
    fileConfig(config.config_file_name)


def _target() -> tuple[StoreURL | None, str | None]:
    """The store URL (None when a caller passed a connection) and the schema of its tables."""
    x = context.get_x_argument(as_dictionary=True)
    schema = config.attributes.get("schema") or x.get("schema") or None
    if "connection" in config.attributes:
        return None, schema  # the caller's connection, and its schema
    url = config.attributes.get("url") or x.get("url")
    url = url or os.environ.get("MOTIA_STATE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("motia-state migrations need a database: set MOTIA_STATE_URL or pass -x url=...")
    return split_schema(url if isinstance(url, StoreURL) else str(url), schema)


URL, SCHEMA = _target()
target_metadata = metadata_for(SCHEMA)

_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "version_table": VERSION_TABLE,
    "version_table_schema": SCHEMA,
    "include_schemas": SCHEMA is not None,
    "include_name": include_name_for(SCHEMA),
    "include_object": include_object,
    "compare_type": True,
    "render_as_batch": True,  # SQLite cannot ALTER most things; batch mode copies the table instead.
}
# The migrations name the schema in every operation; it must exist before the version table goes in it.
_CREATE_SCHEMA = None if SCHEMA is None else f"CREATE SCHEMA IF NOT EXISTS {quote_ident(SCHEMA)}"


def _url() -> StoreURL:
    assert URL is not None
    return URL


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it."""
    context.configure(url=sqlalchemy_url(_url()), literal_binds=True, dialect_opts={"paramstyle": "named"}, **_OPTIONS)
    with context.begin_transaction():
        if _CREATE_SCHEMA is not None:
            context.execute(_CREATE_SCHEMA)
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on a synchronous (possibly async-adapted) connection."""
    context.configure(connection=connection, **_OPTIONS)
    with context.begin_transaction():
        if _CREATE_SCHEMA is not None:
            context.execute(_CREATE_SCHEMA)
        context.run_migrations()


async def run_async_migrations() -> None:
    """Command-line path: a short-lived async engine."""
    target, args = engine_args(_url(), connect_timeout=10.0)
    engine = create_async_engine(target, poolclass=pool.NullPool, **args)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Use the caller's connection when there is one, else open our own."""
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(run_async_migrations())
    else:
        do_run_migrations(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
