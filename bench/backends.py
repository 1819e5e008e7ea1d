"""Where each adapter's store lives for the benchmark, and its two subjects (motia-state and raw driver).

Private resources only: Postgres database ``motia_state_bench`` (created through the admin database), Redis
db 9 (flushed: it is this benchmark's), SQLite files in a temporary directory.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.core import Subject
from bench.subjects import MotiaSubject

__all__ = ["ADAPTERS", "Backend", "make_backend", "pg_admin_url", "pg_url", "redis_url"]

ADAPTERS: Final = ("memory", "sqlite", "postgres", "redis")

#: Pool size for both the adapter and the raw pool; unset = the adapter's default, read from the adapter.
POOL_SIZE: Final = int(os.environ.get("MOTIA_STATE_BENCH_POOL_SIZE", "0")) or None


def _pool_size(motia: MotiaSubject) -> int:
    """The adapter's own pool size, so that the raw pool is the same size."""
    size = getattr(motia.state.adapter, "pool_size", None)
    if not isinstance(size, int):
        raise RuntimeError(f"cannot read the pool size of {motia.state.adapter!r}; set MOTIA_STATE_BENCH_POOL_SIZE")
    return size


def pg_admin_url() -> str:
    return os.environ.get("MOTIA_STATE_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_url(db: str = "motia_state_bench") -> str:
    return pg_admin_url().rsplit("/", 1)[0] + "/" + db


def redis_url() -> str:
    return os.environ.get("MOTIA_STATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


async def ensure_pg_database(db: str) -> None:
    """Create ``db`` (one of this benchmark's) if it does not exist."""
    import asyncpg  # type: ignore[import-untyped]

    assert db.startswith("motia_state_bench"), db
    conn = await asyncpg.connect(pg_admin_url())
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()


@dataclass
class Backend:
    """One adapter under test: the motia-state subject and the raw-driver subject, on the same store."""

    name: str
    motia: MotiaSubject
    raw: Subject
    url: str

    async def open(self) -> None:
        # motia-state first: its connect() runs the migrations that create the table the raw driver uses.
        await self.motia.open()
        await self.raw.open()

    async def close(self) -> None:
        await self.motia.close()
        await self.raw.close()


_tmp: tempfile.TemporaryDirectory[str] | None = None


def _tmpdir() -> Path:
    global _tmp
    if _tmp is None:
        _tmp = tempfile.TemporaryDirectory(prefix="motia-state-bench-")
    return Path(_tmp.name)


async def make_backend(name: str, *, db_suffix: str = "") -> Backend:
    """Build (not open) the subjects of adapter ``name``.

    The store records no changes (``changes: off``): on SQL the change triggers would fire for the raw
    driver's writes too, on the same table. What recording changes costs is measured by ``bench.feed``.
    """
    options: dict[str, Any] = {"changes": False}
    if name == "memory":
        from bench.raw_memory import RawMemory

        return Backend(name, MotiaSubject(name, "memory://", **options), RawMemory(), "memory://")
    if name == "sqlite":
        from bench.raw_sqlite import RawSQLite

        path = _tmpdir() / f"bench{db_suffix}.db"
        url = f"sqlite:///{path}"
        return Backend(name, MotiaSubject(name, url, **options), RawSQLite(str(path)), url)
    if name == "postgres":
        from bench.raw_postgres import RawPostgres

        db = "motia_state_bench" + db_suffix
        await ensure_pg_database(db)
        url = pg_url(db)
        if POOL_SIZE:
            options["pool_size"] = POOL_SIZE
        motia = MotiaSubject(name, url, **options)
        default_pool = os.environ.get("MOTIA_STATE_BENCH_PG_DEFAULT_POOL", "") not in ("", "0")
        raw = RawPostgres(url, _pool_size(motia), same_pool_settings=not default_pool)
        return Backend(name, motia, raw, url)
    if name == "redis":
        from bench.raw_redis import RawRedis

        url = redis_url()
        if POOL_SIZE:
            options["pool_size"] = POOL_SIZE
        motia = MotiaSubject(name, url, **options)
        return Backend(name, motia, RawRedis(url, _pool_size(motia)), url)
    raise ValueError(f"unknown adapter {name!r}; choose from {', '.join(ADAPTERS)}")
