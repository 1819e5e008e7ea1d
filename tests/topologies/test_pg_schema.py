"""Postgres with ``schema:`` (SPEC §12): the tables and the version table in that schema, created by the migrations,
every statement qualified, and two stores in two schemas of one database that never see each other.

The contract suite also runs on this topology (``postgres-schema`` in tests/contract/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from motia_state import Change, StateConfigError, StateManager
from motia_state.backends.postgres import PostgresAdapter
from motia_state.sql import HEAD_REVISION, TABLES, VERSION_TABLE
from motia_state.sql.feed import NOTIFY_CHANNEL, notify_channel
from tests.services import create_private_pg_database, drop_private_pg_database, pg_url_of, require
from tests.topologies.postgres import CI_SCHEMA, REPO, make_pg_schema

pytestmark = pytest.mark.postgres

PREFIX = "mspgb_"


@pytest.fixture
async def fresh_db() -> AsyncIterator[str]:
    """The URL of a private empty database (dropped afterwards)."""
    require("postgres")
    db = await create_private_pg_database(PREFIX)
    try:
        yield pg_url_of(db)
    finally:
        await drop_private_pg_database(db, PREFIX)


@contextlib.asynccontextmanager
async def raw(url: str) -> AsyncIterator[Any]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def tables_by_schema(url: str) -> dict[str, set[str]]:
    async with raw(url) as conn:
        rows = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name LIKE 'motia_state%'"
        )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r[0], set()).add(r[1])
    return out


async def test_the_migrations_create_the_schema_and_everything_goes_in_it(fresh_db: str) -> None:
    async with StateManager.from_url(fresh_db, schema="motia") as state:
        await state.set("s", "k", {"v": 1})
        assert isinstance(state.adapter, PostgresAdapter) and state.adapter.schema == "motia"
    assert await tables_by_schema(fresh_db) == {"motia": {*TABLES, VERSION_TABLE}}
    async with raw(fresh_db) as conn:
        assert await conn.fetchval(f"SELECT version_num FROM motia.{VERSION_TABLE}") == HEAD_REVISION
        assert await conn.fetchval("SELECT value->>'v' FROM motia.motia_state WHERE scope = 's'") == "1"
        assert await conn.fetchval("SELECT count(*) FROM motia.motia_state_changes") == 1
        # The trigger function lives in the schema too, and public holds nothing of ours.
        assert (
            await conn.fetchval(
                "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE p.proname = 'motia_state_record_change'"
            )
            == "motia"
        )


async def test_the_version_table_of_the_ci_schema(tmp_path: Path) -> None:
    state = await make_pg_schema(tmp_path)
    try:
        from tests.services import PG_URL

        async with raw(PG_URL) as conn:
            assert await conn.fetchval(f"SELECT version_num FROM {CI_SCHEMA}.{VERSION_TABLE}") == HEAD_REVISION
    finally:
        await state.close()


async def test_plain_sql_writes_are_recorded_whatever_the_search_path(fresh_db: str) -> None:
    async with StateManager.from_url(fresh_db, schema="motia") as state:
        await state.set("s", "seed", 0)
        async with raw(fresh_db) as conn:
            await conn.execute("SET search_path TO pg_catalog")  # nothing of ours on the path
            await conn.execute("INSERT INTO motia.motia_state (scope, key, value) VALUES ('s', 'psql', '7'::jsonb)")
        changes = [c async for c in _drain(state, "s", 0, 2)]
        assert [(c.event, c.key, c.new_value) for c in changes] == [("created", "seed", 0), ("created", "psql", 7)]


async def _drain(state: StateManager, scope: str, since: int, n: int) -> AsyncIterator[Change]:
    async with state.watch(scope, since=since) as changes:
        for _ in range(n):
            yield await asyncio.wait_for(anext(changes), 5)


async def test_two_schemas_of_one_database_never_see_each_other(fresh_db: str) -> None:
    a = StateManager.from_url(fresh_db, schema="tenant_a")
    b = StateManager.from_url(fresh_db, schema="tenant_b")
    plain = StateManager.from_url(fresh_db)  # the search_path's (public) store, in the same database
    try:
        for store in (a, b, plain):
            await store.connect()
        await a.set("s", "k", "a")
        await b.set("s", "k", "b")
        await plain.set("s", "k", "public")
        assert [await s.get("s", "k") for s in (a, b, plain)] == ["a", "b", "public"]
        assert await a.list_groups() == ["s"] and await b.clear("s") == 1 and await a.get("s", "k") == "a"
        assert [await s.revision() for s in (a, b, plain)] == [1, 2, 1]

        # watch: b's commits neither arrive at a's watch nor wake it (another NOTIFY channel).
        async with a.watch() as seen:
            listener = a.adapter._listener  # type: ignore[attr-defined]
            await asyncio.sleep(0.3)  # the LISTEN connection is up
            generation = listener.generation
            for i in range(5):
                await b.set("s", f"b{i}", i)
                await plain.set("s", f"p{i}", i)
            await asyncio.sleep(0.5)
            assert listener.generation == generation
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(seen), 0.3)
            await a.set("s", "mine", 1)
            change = await asyncio.wait_for(anext(seen), 5)
            assert (change.key, change.new_value) == ("mine", 1)
    finally:
        for store in (a, b, plain):
            await store.close()
    assert await tables_by_schema(fresh_db) == {s: {*TABLES, VERSION_TABLE} for s in ("tenant_a", "tenant_b", "public")}


async def test_triggers_of_two_schemas_are_their_own(fresh_db: str) -> None:
    stores = {name: StateManager.from_url(fresh_db, schema=name) for name in ("tenant_a", "tenant_b")}
    handled: dict[str, list[str]] = {name: [] for name in stores}
    try:
        for name, store in stores.items():

            def make(name: str = name) -> Any:
                async def handler(change: Change) -> None:
                    handled[name].append(change.key)

                return handler

            store.on_change("same-name", scope="jobs", start="beginning")(make())
        await stores["tenant_a"].set("jobs", "a1", 1)
        await stores["tenant_b"].set("jobs", "b1", 1)
        await stores["tenant_b"].set("jobs", "b2", 1)
        runners = [asyncio.ensure_future(s.run_triggers()) for s in stores.values()]
        try:
            for _ in range(100):
                if len(handled["tenant_a"]) >= 1 and len(handled["tenant_b"]) >= 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        finally:
            for r in runners:
                r.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
        assert handled == {"tenant_a": ["a1"], "tenant_b": ["b1", "b2"]}
        async with raw(fresh_db) as conn:
            for schema in stores:
                assert await conn.fetchval(f"SELECT count(*) FROM {schema}.motia_state_triggers") == 1
    finally:
        for store in stores.values():
            await store.close()


def test_notify_channels_differ_per_schema() -> None:
    channels = {notify_channel(None), notify_channel("a"), notify_channel("b"), notify_channel("x" * 63)}
    assert len(channels) == 4 and notify_channel(None) == NOTIFY_CHANNEL
    assert all(len(c.encode()) <= 63 for c in channels)


async def test_an_unusual_schema_name_is_quoted_everywhere(fresh_db: str) -> None:
    name = 'Motia "Prod"-1'
    async with StateManager.from_url(fresh_db, schema=name) as state:
        await state.set("s", "k", 1)
        async with state.watch("s") as changes:
            await state.set("s", "k", 2)
            assert (await asyncio.wait_for(anext(changes), 5)).new_value == 2
        assert [i.value for i in await state.items("s", filters=[{"path": "", "op": "eq", "value": 2}])] == [2]
    assert name in await tables_by_schema(fresh_db)


def _alembic(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOTIA_STATE_URL": url, "PYTHONPATH": str(REPO)}
    alembic = Path(sys.executable).parent / "alembic"
    return subprocess.run(
        [str(alembic), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_alembic_upgrade_and_check_in_a_schema(fresh_db: str) -> None:
    url = fresh_db + "?schema=motia_alembic"
    up = await asyncio.to_thread(_alembic, "upgrade", "head", url=url)
    assert up.returncode == 0, up.stderr
    assert await tables_by_schema(fresh_db) == {"motia_alembic": {*TABLES, VERSION_TABLE}}
    check = await asyncio.to_thread(_alembic, "check", url=url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    # The -x form names the schema too; a store made by the adapter is as clean.
    async with StateManager.from_url(fresh_db, schema="motia_auto") as state:
        await state.set("s", "k", 1)
    check_x = await asyncio.to_thread(_alembic, "-x", "schema=motia_auto", "check", url=fresh_db)
    assert check_x.returncode == 0, check_x.stdout + check_x.stderr


async def test_alembic_check_of_the_ci_schema(tmp_path: Path) -> None:
    from tests.services import PG_URL

    state = await make_pg_schema(tmp_path)
    await state.close()
    check = await asyncio.to_thread(_alembic, "check", url=PG_URL + f"?schema={CI_SCHEMA}")
    assert check.returncode == 0, check.stdout + check.stderr


async def test_migrate_command_and_downgrade_in_a_schema(fresh_db: str, tmp_path: Path) -> None:
    from motia_state import migrate
    from tests.cli.conftest import run_cli

    url = fresh_db + "?schema=motia_cli"
    sql = run_cli("--url", url, "migrate", "--sql", cwd=tmp_path)
    assert sql.code == 0, sql.err
    assert 'CREATE SCHEMA IF NOT EXISTS "motia_cli"' in sql.out and "motia_cli.motia_state_alembic_version" in sql.out
    assert run_cli("--url", url, "migrate", "--check", cwd=tmp_path).code == 1
    done = run_cli("--url", url, "migrate", cwd=tmp_path)
    assert done.code == 0 and done.json()["revision"] == HEAD_REVISION, done.err
    config = tmp_path / "config.yml"
    config.write_text(f"state:\n  url: {fresh_db}\n  schema: motia_cli\n")
    assert run_cli("--config", str(config), "migrate", "--check", cwd=tmp_path).code == 0
    assert run_cli("--config", str(config), "set", "s", "k", "1", cwd=tmp_path).code == 0
    assert run_cli("--url", url, "get", "s", "k", cwd=tmp_path).out.strip() == "1"
    assert await migrate.current(fresh_db, schema="motia_cli") == HEAD_REVISION
    assert await migrate.current(fresh_db) is None  # public holds no store
    await migrate.downgrade(url, "base")
    assert await tables_by_schema(fresh_db) == {"motia_cli": {VERSION_TABLE}}


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "non-empty"), ("pg_mine", "pg_"), ("x" * 64, "63 bytes"), (5, "non-empty"), ("a\x00b", "U\\+0000")],
)
def test_bad_schema_values_are_refused(value: object, why: str, tmp_path: Path) -> None:
    from tests.services import PG_URL

    with pytest.raises(StateConfigError, match=f"schema must be .*{why}"):
        StateManager.from_url(PG_URL, schema=value)
    if isinstance(value, str) and value and "\x00" not in value:
        with pytest.raises(StateConfigError, match="schema"):
            StateManager.from_url(f"{PG_URL}?schema={value}")
        config = tmp_path / "config.yml"
        config.write_text(f"state:\n  url: {PG_URL}\n  schema: {value}\n")
        with pytest.raises(StateConfigError, match="schema"):
            StateManager.from_config(config)


def test_schema_is_a_postgres_option_only(tmp_path: Path) -> None:
    with pytest.raises(StateConfigError, match="does not apply to the sqlite adapter"):
        StateManager.from_url(f"sqlite:///{tmp_path / 'x.db'}", schema="motia")
    with pytest.raises(StateConfigError, match="does not apply to the redis adapter"):
        StateManager.from_url("redis://127.0.0.1:6379/0", listen_url="postgresql://h/db")
