"""Where the test servers are, and the rule: under CI=true a missing service fails, elsewhere it skips."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

PG_ADMIN_URL = os.environ.get("MOTIA_STATE_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEST_DB = os.environ.get("MOTIA_STATE_TEST_PG_DB", "motia_state_test")
PG_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_TEST_DB
REDIS_URL = os.environ.get("MOTIA_STATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

_START = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
}


def answers(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection on host:port (within a second)."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    """Skip (laptop) or fail (CI=true) when ``service`` does not answer."""
    host, port = ("127.0.0.1", 5432) if service == "postgres" else ("127.0.0.1", 6379)
    url = PG_ADMIN_URL if service == "postgres" else REDIS_URL
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or host, parts.port or port
    if answers(host, port):
        return
    reason = f"{service} is not answering on {host}:{port}; start it with: {_START[service]}"
    if IN_CI:
        pytest.fail(f"CI=true requires {service}: {reason}", pytrace=False)
    pytest.skip(reason)


def pg_url_of(db: str) -> str:
    """The URL of database ``db`` on the test server."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db


async def create_private_pg_database(prefix: str) -> str:
    """A new empty database named ``prefix`` + a random suffix (a test's own, to drop afterwards)."""
    import uuid

    import asyncpg  # type: ignore[import-untyped]

    db = f"{prefix}{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()
    return db


async def drop_private_pg_database(db: str, prefix: str) -> None:
    """Drop ``db``, which must be one of ``prefix``'s (never anyone else's database)."""
    import contextlib

    import asyncpg

    assert db.startswith(prefix), db
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        with contextlib.suppress(asyncpg.InvalidCatalogNameError):
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.contextmanager
def shared_store_url(kind: str, tmp_path: Path, *, redis_url: str, pg_prefix: str) -> Iterator[str]:
    """A fresh store several processes can open: a SQLite file, a private Postgres database (dropped after),
    or a Redis database number (flushed before and after). For the multi-process tests."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
    elif kind == "postgres":
        require("postgres")
        db = asyncio.run(create_private_pg_database(pg_prefix))
        try:
            yield pg_url_of(db)
        finally:
            asyncio.run(drop_private_pg_database(db, pg_prefix))
    else:
        require("redis")
        import redis

        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        try:
            yield redis_url
        finally:
            client.flushdb()
            client.close()
