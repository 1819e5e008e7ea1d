"""Alembic environment of motia-state: only the ``motia_state`` table, versioned in its own table.

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

from motia_state.sql import VERSION_TABLE
from motia_state.sql.connect import engine_args, sqlalchemy_url
from motia_state.sql.migrate import include_name, include_object
from motia_state.sql.schema import metadata
from motia_state.urls import StoreURL, parse_url

config = context.config

# Only the command line configures logging: a host application calling us keeps its own logging setup.
if config.config_file_name is not None and "connection" not in config.attributes and "url" not in config.attributes:
    fileConfig(config.config_file_name)

target_metadata = metadata


def _url() -> StoreURL:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    url = url or os.environ.get("MOTIA_STATE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("motia-state migrations need a database: set MOTIA_STATE_URL or pass -x url=...")
    return url if isinstance(url, StoreURL) else parse_url(str(url))


_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "version_table": VERSION_TABLE,
    "include_name": include_name,
    "include_object": include_object,
    "compare_type": True,
    "render_as_batch": True,  # SQLite cannot ALTER most things; batch mode copies the table instead.
}


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it."""
    context.configure(url=sqlalchemy_url(_url()), literal_binds=True, dialect_opts={"paramstyle": "named"}, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on a synchronous (possibly async-adapted) connection."""
    context.configure(connection=connection, **_OPTIONS)
    with context.begin_transaction():
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
