"""Where each adapter's store lives for the benchmark, and its subjects: motia-state, the raw driver, the
simplest-statement baseline (``bench.plain``, SQLite and Redis) and the peers (``bench.peers``).

Private resources only: Postgres database ``motia_state_bench`` (created through the admin database), Redis
db 9 (flushed: it is this benchmark's), SQLite files in a temporary directory. ``postgres-pgbouncer`` runs the
same workloads through PgBouncer in transaction pooling mode (``bash .ci/services/pgbouncer.sh start``), on
database ``motia_state_bench_pgb``; it is reported as not available when PgBouncer does not answer. The peers
have storage of their own (see ``bench.peers``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.core import Subject
from bench.subjects import MotiaSubject

__all__ = ["ADAPTERS", "Backend", "make_backend", "pg_admin_url", "pg_url", "redis_url"]

ADAPTERS: Final = ("memory", "sqlite", "postgres", "redis", "postgres-pgbouncer", "redis-cluster")

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


def pgbouncer_url(db: str) -> str:
    base = os.environ.get("MOTIA_STATE_BENCH_PGBOUNCER_URL", "postgresql://postgres@127.0.0.1:6432/postgres")
    return base.rsplit("/", 1)[0] + "/" + db


def _require_pgbouncer(url: str) -> None:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6432), timeout=1.0):
            return
    except OSError:
        raise RuntimeError(
            f"PgBouncer is not answering on {parts.hostname}:{parts.port}: row skipped;"
            " start it with: bash .ci/services/pgbouncer.sh start"
        ) from None


def redis_url() -> str:
    return os.environ.get("MOTIA_STATE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")


def redis_cluster_url() -> str:
    """The benchmark's own Redis Cluster (``MOTIA_STATE_CLUSTER_PORT=7200 bash .ci/services/redis_cluster.sh
    start``): it is flushed."""
    default = "redis+cluster://127.0.0.1:7200,127.0.0.1:7201,127.0.0.1:7202/"
    return os.environ.get("MOTIA_STATE_BENCH_REDIS_CLUSTER_URL", default)


def _require_port(url: str, start: str) -> None:
    import socket

    host, _, port = url.split("://", 1)[1].split("/", 1)[0].split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return
    except OSError:
        raise RuntimeError(f"nothing answers on {host}:{port}: row skipped; start it with: {start}") from None


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
    """One adapter under test: motia-state, the raw driver and the plain baselines on the same store, and
    the peers, each on its own."""

    name: str
    motia: MotiaSubject
    raw: Subject
    url: str
    #: Simplest-statement subjects (``bench.plain``); each has ``workloads``, the rows it serves.
    baselines: list[Any] = field(default_factory=list)
    #: Peer subjects (``bench.peers``); each has ``skips``, workload -> why it cannot do it.
    peers: list[Any] = field(default_factory=list)
    #: Peers that could not be built or opened, and why (reported, not fatal).
    notes: list[str] = field(default_factory=list)

    async def open(self) -> None:
        # motia-state first: its connect() runs the migrations that create the table the raw driver uses.
        await self.motia.open()
        await self.raw.open()
        for b in self.baselines:
            await b.open()
        opened = []
        for p in self.peers:
            try:
                await p.open()
            except Exception as exc:  # a peer's server or package problem must not stop the run
                self.notes.append(f"{self.name}: peer {p.label} cannot open ({type(exc).__name__}: {exc})")
                await p.close()
                continue
            opened.append(p)
        self.peers = opened

    async def close(self) -> None:
        for p in self.peers:
            await p.close()
        for b in self.baselines:
            await b.close()
        await self.motia.close()
        await self.raw.close()

    def subjects(self, workload: str) -> tuple[list[Subject], dict[str, str]]:
        """The subjects of one row (motia-state, raw, baseline, peers) and the peers skipped with why."""
        subjects: list[Subject] = [self.motia, self.raw]
        subjects += [b for b in self.baselines if workload in b.workloads]
        skipped: dict[str, str] = {}
        for p in self.peers:
            if workload in p.skips:
                skipped[p.name] = p.skips[workload]
            else:
                subjects.append(p)
        return subjects, skipped


_tmp: tempfile.TemporaryDirectory[str] | None = None


def _tmpdir() -> Path:
    global _tmp
    if _tmp is None:
        _tmp = tempfile.TemporaryDirectory(prefix="motia-state-bench-")
    return Path(_tmp.name)


async def make_backend(name: str, *, db_suffix: str = "", peers: bool = False) -> Backend:
    """Build (not open) the subjects of adapter ``name``; with ``peers``, its peers too (memory, sqlite,
    postgres and redis have some; a peer whose package does not import is a note, not an error).

    The store records no changes (``changes: off``): see ``_make_backend``.
    """
    backend = await _make_backend(name, db_suffix)
    if name == "sqlite":
        from bench.plain import PlainSQLite

        backend.baselines.append(PlainSQLite(backend.url.removeprefix("sqlite:///")))
    elif name == "redis":
        from bench.plain import PlainRedis

        backend.baselines.append(PlainRedis(backend.url, _pool_size(backend.motia)))
    if peers:
        from bench.peers import make_peers

        size = 0 if name in ("memory", "sqlite") else _pool_size(backend.motia)
        backend.peers, backend.notes = await make_peers(name, tmpdir=_tmpdir(), pool_size=size)
    return backend


async def _make_backend(name: str, db_suffix: str) -> Backend:
    """The motia-state and raw subjects of adapter ``name``.

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
    if name == "postgres-pgbouncer":
        from bench.raw_postgres import RawPostgres

        db = "motia_state_bench_pgb" + db_suffix
        url = pgbouncer_url(db)
        _require_pgbouncer(url)
        await ensure_pg_database(db)  # directly on Postgres: the pooler's wildcard entry then serves it
        if POOL_SIZE:
            options["pool_size"] = POOL_SIZE
        motia = MotiaSubject(name, url, **options)
        # The raw baseline as PgBouncer (1.18) allows it: no statement cache, no session setting.
        return Backend(name, motia, RawPostgres(url, _pool_size(motia), pooler=True), url)
    if name == "redis":
        from bench.raw_redis import RawRedis

        url = redis_url()
        if POOL_SIZE:
            options["pool_size"] = POOL_SIZE
        motia = MotiaSubject(name, url, **options)
        return Backend(name, motia, RawRedis(url, _pool_size(motia)), url)
    if name == "redis-cluster":
        from bench.raw_redis import RawRedis

        url = redis_cluster_url()
        _require_port(url, "MOTIA_STATE_CLUSTER_PORT=7200 bash .ci/services/redis_cluster.sh start")
        if POOL_SIZE:
            options["pool_size"] = POOL_SIZE
        motia = MotiaSubject(name, url, **options)
        return Backend(name, motia, RawRedis(url, _pool_size(motia)), url)
    raise ValueError(f"unknown adapter {name!r}; choose from {', '.join(ADAPTERS)}")
