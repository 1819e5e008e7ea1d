"""Alembic migrations and the programmatic API (motia_state.migrate) on SQLite and Postgres."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from motia_state import StateManager
from motia_state.errors import SchemaOutOfDateError, StateBackendError, StateConfigError
from motia_state.sql import TABLE_NAME, VERSION_TABLE
from motia_state.sql.connect import engine_args
from motia_state.sql.migrate import (
    current,
    downgrade,
    ensure_schema,
    head,
    include_name,
    include_object,
    offline_sql,
    pending,
    upgrade,
)
from motia_state.sql.schema import metadata
from motia_state.urls import parse_url
from tests.sql import _workers

REPO = Path(__file__).resolve().parents[2]


async def _run_sync(url: str, fn: Any) -> Any:
    target, args = engine_args(parse_url(url), 10.0)
    engine = create_async_engine(target, poolclass=NullPool, **args)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    return set(await _run_sync(url, lambda c: sa.inspect(c).get_table_names()))


async def _exec(url: str, *statements: str) -> list[Any]:
    def run(c: sa.Connection) -> list[Any]:
        out: list[Any] = []
        for st in statements:
            result = c.execute(sa.text(st))
            out.append(result.fetchall() if result.returns_rows else None)
        return out

    result: list[Any] = await _run_sync(url, run)
    return result


async def _compare(url: str) -> list[Any]:
    def run(connection: sa.Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": include_name,
                "include_object": include_object,
                "version_table": VERSION_TABLE,
            },
        )
        return list(compare_metadata(ctx, metadata))

    result: list[Any] = await _run_sync(url, run)
    return result


async def test_upgrade_downgrade_upgrade(sql_url: str) -> None:
    assert await current(sql_url) is None
    assert await pending(sql_url) == ["0001", "0002", "0003", head()]
    await upgrade(sql_url)
    assert await current(sql_url) == head()
    assert await pending(sql_url) == []
    assert {TABLE_NAME, VERSION_TABLE} <= await _tables(sql_url)
    await downgrade(sql_url, "base")
    assert await current(sql_url) is None
    assert TABLE_NAME not in await _tables(sql_url)
    await upgrade(sql_url)
    assert await current(sql_url) == head()
    # The table works after the round trip.
    state = StateManager.from_url(sql_url, migrate="check")
    try:
        await state.set("s", "k", {"n": 1})
        assert await state.get("s", "k") == {"n": 1}
    finally:
        await state.close()


async def test_migrations_and_model_never_drift(sql_url: str) -> None:
    await upgrade(sql_url)
    assert await _compare(sql_url) == []


async def test_alembic_check_sees_drift_when_there_is_some(sql_url: str) -> None:
    # Guard against a comparison that can never fail: an extra column on our table is reported.
    await upgrade(sql_url)
    await _exec(sql_url, f"ALTER TABLE {TABLE_NAME} ADD COLUMN extra_col INTEGER")
    diffs = await _compare(sql_url)
    assert any("extra_col" in repr(d) for d in diffs), diffs


async def test_host_application_tables_are_untouched(sql_url: str) -> None:
    # A host application with its own Alembic history and tables in the same database.
    await _exec(
        sql_url,
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version (version_num) VALUES ('hostapp42')",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)",
        "INSERT INTO orders (id, note) VALUES (1, 'keep me')",
    )
    await upgrade(sql_url)
    assert await _compare(sql_url) == []  # the host's tables are not reported as drift
    await downgrade(sql_url, "base")
    await upgrade(sql_url)
    rows = await _exec(sql_url, "SELECT version_num FROM alembic_version", "SELECT id, note FROM orders")
    assert rows[0] == [("hostapp42",)]
    assert rows[1] == [(1, "keep me")]
    assert (await _exec(sql_url, f"SELECT version_num FROM {VERSION_TABLE}"))[0] == [(head(),)]


async def test_check_mode_raises_with_the_command(sql_url: str) -> None:
    with pytest.raises(SchemaOutOfDateError) as info:
        await ensure_schema(sql_url, "check")
    assert info.value.command == "motia-state migrate"
    assert "motia-state migrate" in str(info.value)
    assert "alembic upgrade head" in str(info.value)
    state = StateManager.from_url(sql_url, migrate="check")
    with pytest.raises(SchemaOutOfDateError):
        await state.connect()
    await state.close()
    await upgrade(sql_url)
    await ensure_schema(sql_url, "check")  # at head: no error


async def test_off_mode_creates_nothing(sql_url: str) -> None:
    await ensure_schema(sql_url, "off")
    state = StateManager.from_url(sql_url, migrate="off")
    try:
        await state.connect()
        assert TABLE_NAME not in await _tables(sql_url)
        with pytest.raises(StateBackendError) as info:
            await state.get("s", "k")
        assert "motia-state migrate" in str(info.value)
    finally:
        await state.close()


async def test_auto_mode_migrates_on_connect(sql_url: str) -> None:
    state = StateManager.from_url(sql_url)
    try:
        await state.set("s", "k", 1)
    finally:
        await state.close()
    assert await current(sql_url) == head()


async def test_unknown_mode_is_a_config_error(sqlite_url: str) -> None:
    with pytest.raises(StateConfigError):
        await ensure_schema(sqlite_url, "sometimes")


async def test_database_newer_than_package(sql_url: str) -> None:
    await upgrade(sql_url)
    await _exec(sql_url, f"UPDATE {VERSION_TABLE} SET version_num = 'fromthefuture'")
    for mode in ("auto", "check"):
        with pytest.raises(SchemaOutOfDateError) as info:
            await ensure_schema(sql_url, mode)
        assert "fromthefuture" in str(info.value)


def test_offline_sql_for_a_dba() -> None:
    pg = offline_sql("postgresql://user:secret@db.example/app")
    assert 'COLLATE "C"' in pg and "JSONB" in pg and "WHERE expires_at IS NOT NULL" in pg
    assert f"CREATE TABLE {VERSION_TABLE}" in pg and "alembic_version (" not in pg.replace(VERSION_TABLE, "")
    assert "secret" not in pg
    lite = offline_sql("sqlite:///x.db")
    assert "CREATE TABLE motia_state" in lite and "CREATE INDEX ix_motia_state_expires_at" in lite


async def test_unreachable_postgres_is_a_backend_error_without_password() -> None:
    with pytest.raises(StateBackendError) as info:
        await current("postgresql://u:hunter2@127.0.0.1:1/nowhere", connect_timeout=2.0)
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)
    assert info.value.backend == "postgres"


async def test_called_from_a_running_loop_many_times(sqlite_url: str) -> None:
    # Programmatic use inside an event loop: no nested asyncio.run, repeated calls are cheap and fine.
    for _ in range(3):
        await ensure_schema(sqlite_url)
    assert await current(sqlite_url) == head()


def _alembic(args: list[str], url: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MOTIA_STATE_URL=url)
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("plain", [True, False])
def test_alembic_cli_from_repo_root(tmp_path: Path, plain: bool) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}" if plain else f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    up = _alembic(["upgrade", "head"], url)
    assert up.returncode == 0, up.stderr
    check = _alembic(["check"], url)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    cur = _alembic(["current"], url)
    assert head() in cur.stdout


def test_alembic_cli_x_url_wins(tmp_path: Path) -> None:
    env_db, x_db = tmp_path / "env.db", tmp_path / "x.db"
    up = _alembic(["-x", f"url=sqlite:///{x_db}", "upgrade", "head"], f"sqlite:///{env_db}")
    assert up.returncode == 0, up.stderr
    assert x_db.exists() and not env_db.exists()


@pytest.mark.postgres
async def test_alembic_cli_on_postgres(pg_db_url: str) -> None:
    up = _alembic(["upgrade", "head"], pg_db_url)
    assert up.returncode == 0, up.stderr
    check = _alembic(["check"], pg_db_url)
    assert check.returncode == 0, check.stderr


def _spawn_all(target: Any, args_list: list[tuple[Any, ...]], timeout: float) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, start)) for args in args_list]
    for p in procs:
        p.start()
    start.set()
    try:
        for p in procs:
            p.join(timeout)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


async def test_concurrent_auto_migrate_processes(sql_url: str) -> None:
    _spawn_all(_workers.auto_migrate, [(sql_url,)] * 6, timeout=120)
    assert await current(sql_url) == head()
    state = StateManager.from_url(sql_url)
    try:
        assert len(await state.keys("boot")) == 6
    finally:
        await state.close()
