"""The Postgres topologies of SPEC §12 for the tests: Postgres behind PgBouncer, and Postgres in its own schema.

PgBouncer comes from ``.ci/services/pgbouncer.sh`` (transaction pooling, port 6432; also started by
``bash .ci/topologies start``). Under CI=true a PgBouncer that does not answer fails the test; elsewhere it
skips, naming the command that starts it. The two factories have the signature of ``make_postgres``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from motia_state import StateManager
from motia_state.sql import TABLES, qualified
from tests.services import IN_CI, PG_ADMIN_URL, PG_URL, answers, pg_url_of, require

REPO = Path(__file__).resolve().parents[2]
PGBOUNCER_SCRIPT = REPO / ".ci" / "services" / "pgbouncer.sh"
BOUNCER_DB = "motia_state_bouncer"
PGBOUNCER_URL = os.environ.get("MOTIA_STATE_TEST_PGBOUNCER_URL", f"postgresql://postgres@127.0.0.1:6432/{BOUNCER_DB}")
#: The same database as PGBOUNCER_URL, straight on Postgres (truncation, LISTEN, looking at the tables).
BOUNCER_DIRECT_URL = pg_url_of(urlsplit(PGBOUNCER_URL).path.lstrip("/") or BOUNCER_DB)
#: The schema of make_pg_schema's store, in the normal test database.
CI_SCHEMA = "motia_ci"


def pgbouncer_url_of(db: str) -> str:
    """The URL of database ``db`` through the test PgBouncer (its wildcard entry serves every database)."""
    return PGBOUNCER_URL.rsplit("/", 1)[0] + "/" + db


def require_pgbouncer() -> None:
    """Skip (laptop) or fail (CI=true) when PgBouncer, or the Postgres behind it, does not answer."""
    require("postgres")
    parts = urlsplit(PGBOUNCER_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6432
    if answers(host, port):
        return
    reason = (
        f"PgBouncer is not answering on {host}:{port}; start it with: "
        f"bash {PGBOUNCER_SCRIPT.relative_to(REPO)} start (or: bash .ci/topologies start)"
    )
    if IN_CI:
        pytest.fail(f"CI=true requires PgBouncer: {reason}", pytrace=False)
    pytest.skip(reason)


async def ensure_database(db: str) -> None:
    """Create database ``db`` on the test server (directly, not through the pooler) unless it exists."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()


async def truncate(direct_url: str, schema: str | None) -> None:
    """Empty every table of the store (in ``schema``) through a direct connection."""
    import asyncpg

    conn = await asyncpg.connect(direct_url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(qualified(t, schema) for t in TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()


async def make_pgbouncer(tmp_path: Path, **options: Any) -> StateManager:
    """A fresh store through PgBouncer (transaction pooling); watch polls (no listen_url unless given)."""
    require_pgbouncer()
    await ensure_database(urlsplit(BOUNCER_DIRECT_URL).path.lstrip("/"))
    state = StateManager.from_url(PGBOUNCER_URL, **options)
    await state.connect()
    await truncate(BOUNCER_DIRECT_URL, options.get("schema"))
    return state


async def make_pg_schema(tmp_path: Path, **options: Any) -> StateManager:
    """A fresh store in schema ``motia_ci`` of the normal test database (its tables truncated)."""
    require("postgres")
    from tests.conftest import ensure_pg_database

    await ensure_pg_database()
    options.setdefault("schema", CI_SCHEMA)
    state = StateManager.from_url(PG_URL, **options)
    await state.connect()
    await truncate(PG_URL, options["schema"])
    return state
