"""Run motia-state's Alembic migrations from Python, inside your own event loop::

    from motia_state import migrate

    await migrate.upgrade("postgresql://app@db:5432/app")   # to the newest revision
    print(await migrate.pending("postgresql://app@db:5432/app"))   # [] when up to date

The implementation lives in :mod:`motia_state.sql.migrate`.
"""

from .sql.migrate import (
    MIGRATE_MODES,
    current,
    downgrade,
    ensure_schema,
    head,
    migrations_dir,
    offline_sql,
    pending,
    upgrade,
)

__all__ = [
    "MIGRATE_MODES",
    "current",
    "downgrade",
    "ensure_schema",
    "head",
    "migrations_dir",
    "offline_sql",
    "pending",
    "upgrade",
]
