"""Shared fixtures: one factory per backend, used by the contract suite and the backend tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.sql import TABLES
from tests.services import IN_CI, PG_ADMIN_URL, PG_TEST_DB, PG_URL, REDIS_URL, require

pytest_plugins = ["motia_state.testing"]

StoreFactory = Callable[..., Awaitable[StateManager]]


async def ensure_pg_database() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_TEST_DB)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    finally:
        await conn.close()


async def make_memory(tmp_path: Path, **options: Any) -> StateManager:
    return StateManager.from_url("memory://", **options)


async def make_sqlite(tmp_path: Path, **options: Any) -> StateManager:
    return StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}", **options)


async def make_postgres(tmp_path: Path, **options: Any) -> StateManager:
    require("postgres")
    await ensure_pg_database()
    state = StateManager.from_url(PG_URL, **options)
    await state.connect()
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    return state


async def make_redis(tmp_path: Path, **options: Any) -> StateManager:
    require("redis")
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return StateManager.from_url(REDIS_URL, **options)


async def make_redis_motia(tmp_path: Path, **options: Any) -> StateManager:
    """Redis in Motia's own key layout (shared with a Motia app)."""
    await make_redis(tmp_path)
    return StateManager.from_url(REDIS_URL + "?layout=motia", **options)


FACTORIES: dict[str, StoreFactory] = {
    "memory": make_memory,
    "sqlite": make_sqlite,
    "postgres": make_postgres,
    "redis": make_redis,
}
MARKS = {"postgres": [pytest.mark.postgres], "redis": [pytest.mark.redis]}
BACKENDS = [pytest.param(name, marks=MARKS.get(name, [])) for name in FACTORIES]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path) -> Callable[..., Awaitable[StateManager]]:
    """Build another store on the same backend (same database/file), e.g. with other options."""

    async def make(**options: Any) -> StateManager:
        return await FACTORIES[backend](tmp_path, **options)

    return make


@pytest.fixture
async def state(backend: str, tmp_path: Path) -> AsyncIterator[StateManager]:
    """A fresh, empty store on each backend."""
    store = await FACTORIES[backend](tmp_path)
    try:
        yield store
    finally:
        await store.close()


def pytest_report_header() -> str:
    return f"motia-state tests: CI={IN_CI} postgres={PG_URL} redis={REDIS_URL}"


_service_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and ("postgres" in report.keywords or "redis" in report.keywords):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        # A store's declared missing ability (motia_state.testing) is not a missing service.
        if not str(reason).startswith(("Skipped: the store under test lacks", "the store under test lacks")):
            _service_skips.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under CI=true a skipped Postgres/Redis test is a failure, whatever skipped it.
    if IN_CI and _service_skips:
        print(f"\nCI=true: {len(_service_skips)} Postgres/Redis tests were skipped, e.g. {_service_skips[0]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
