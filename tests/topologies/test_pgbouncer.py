"""Postgres behind PgBouncer in transaction pooling mode (SPEC §12): every operation, watch, triggers, migrations.

The contract suite also runs on this topology (``postgres-pgbouncer`` in tests/contract/conftest.py); these
are the pooler's own promises: nothing refused at startup, no prepared statement lost under concurrency, no
session state left behind, migrations from many processes at once, watch by polling or through listen_url.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from motia_state import Change, StateConfigError, StateManager
from motia_state.backends.postgres import PostgresAdapter
from motia_state.sql import HEAD_REVISION, VERSION_TABLE
from tests.services import create_private_pg_database, drop_private_pg_database, pg_url_of
from tests.topologies.postgres import (
    BOUNCER_DIRECT_URL,
    PGBOUNCER_URL,
    REPO,
    make_pgbouncer,
    pgbouncer_url_of,
    require_pgbouncer,
)

pytestmark = pytest.mark.postgres

PREFIX = "mspgb_"


def adapter_of(state: StateManager) -> PostgresAdapter:
    assert isinstance(state.adapter, PostgresAdapter)
    return state.adapter


@pytest.fixture
async def bouncer(tmp_path: Path) -> AsyncIterator[StateManager]:
    store = await make_pgbouncer(tmp_path)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def fresh_db() -> AsyncIterator[str]:
    """A private empty database (created and dropped directly on Postgres)."""
    require_pgbouncer()
    db = await create_private_pg_database(PREFIX)
    try:
        yield db
    finally:
        await drop_private_pg_database(db, PREFIX)


async def test_pgbouncer_refuses_session_settings_but_the_store_works(bouncer: StateManager) -> None:
    import asyncpg  # type: ignore[import-untyped]

    # What failed before: a startup parameter PgBouncer does not know.
    with pytest.raises(asyncpg.ProtocolViolationError, match="unsupported startup parameter"):
        await asyncpg.connect(PGBOUNCER_URL, server_settings={"plan_cache_mode": "force_generic_plan"})
    adapter = adapter_of(bouncer)
    assert adapter.pooled and adapter.watch_mode == "poll"
    assert (await bouncer.set("s", "k", {"n": 1})).new_value == {"n": 1}
    assert await bouncer.get("s", "k") == {"n": 1}
    assert (await bouncer.update("s", "k", [{"type": "increment", "path": "n", "by": 2}])).new_value == {"n": 3}
    assert await bouncer.keys("s") == ["k"]


async def test_statement_cache_size_zero_in_the_url_says_pooler() -> None:
    require_pgbouncer()
    direct = StateManager.from_url(BOUNCER_DIRECT_URL + "?statement_cache_size=0")
    through = StateManager.from_url(PGBOUNCER_URL + "?statement_cache_size=0")
    plain = StateManager.from_url(BOUNCER_DIRECT_URL)
    try:
        for store in (direct, through, plain):
            await store.set("s", "k", 1)
        # Explicit: no startup parameter is even tried, on either side; a direct connection keeps its cache.
        assert adapter_of(direct).pooled and adapter_of(through).pooled and not adapter_of(plain).pooled
        assert adapter_of(plain).watch_mode == "listen"
    finally:
        for store in (direct, through, plain):
            await store.close()


async def test_a_pooler_dropping_the_session_setting_is_detected(
    bouncer: StateManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pooler set to ignore the startup parameter lets the connection in without the setting: the value read
    # back at connect differs from the one sent. Simulated on a direct connection by expecting another value.
    from motia_state.backends.postgres import adapter as module

    monkeypatch.setattr(module, "SESSION_PLAN_MODE", "force_custom_plan")
    store = StateManager.from_url(BOUNCER_DIRECT_URL)
    try:
        await store.set("s", "k", 1)
        assert adapter_of(store).pooled and adapter_of(store).watch_mode == "poll"
        assert await store.get("s", "k") == 1
    finally:
        await store.close()


async def test_many_concurrent_tasks_through_the_pooler(tmp_path: Path) -> None:
    # 200 tasks on 3 stores (pools of 20, 20 and 5: more client connections than PgBouncer's 20 server ones),
    # every kind of statement, unnamed statements only: no prepared statement error, every write counted.
    stores = [await make_pgbouncer(tmp_path, pool_size=n) for n in (20, 20, 5)]
    errors: list[BaseException] = []

    async def work(i: int) -> None:
        store = stores[i % len(stores)]
        try:
            for j in range(6):
                await store.set("s", f"k{i % 40}", {"i": i, "j": j})
                await store.get("s", f"k{(i + j) % 40}")
                await store.update("c", f"n{i % 10}", [{"type": "increment", "path": "n", "by": 1}])
                if j % 3 == 0:
                    await store.set_many(f"m{i}", {f"x{j}": j, f"y{j}": [j]})
                    await store.get_many(f"m{i}", [f"x{j}", "nope"])
                    await store.items("s", filters=[{"path": "i", "op": "gte", "value": 0}], limit=5)
                    await store.delete(f"m{i}", f"y{j}")
        except BaseException as exc:  # collected: one failure must not hide the others
            errors.append(exc)

    try:
        await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(200))), 240)
        assert not errors, f"{len(errors)} failures, e.g. {errors[0]!r}"
        total = sum([(await stores[0].get("c", f"n{k}"))["n"] for k in range(10)])
        assert total == 200 * 6
        assert len(await stores[1].keys("s")) == 40
    finally:
        for store in stores:
            await store.close()


async def test_no_session_state_is_left_on_the_servers(bouncer: StateManager) -> None:
    import asyncpg

    @bouncer.on_change("pgb-locks", scope="t")
    async def handler(change: Change) -> None:
        pass

    runner = asyncio.ensure_future(bouncer.run_triggers())
    try:
        await asyncio.gather(*(bouncer.set("t", f"k{i}", i) for i in range(30)))
        await asyncio.sleep(1.0)
        conn = await asyncpg.connect(BOUNCER_DIRECT_URL)
        try:
            # No session advisory lock held, no prepared statement kept by any server connection of this database.
            locks = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            assert locks == 0
            listening = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            )
            assert listening == 0
        finally:
            await conn.close()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


_MIGRATE_AND_WRITE = """
import asyncio, sys
from motia_state import StateManager

async def main() -> None:
    async with StateManager.from_url(sys.argv[1]) as state:
        await state.set("procs", sys.argv[2], int(sys.argv[2]))
        print(await state.revision())

asyncio.run(main())
"""


def test_migrations_from_many_processes_at_once_through_the_pooler(fresh_db: str) -> None:
    url = pgbouncer_url_of(fresh_db)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MOTIA_STATE_URL", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_AND_WRITE, url, str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(8)
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outcomes, strict=True):
        assert p.returncode == 0, err[-2000:]

    async def check() -> None:
        import asyncpg

        conn = await asyncpg.connect(pg_url_of(fresh_db))
        try:
            assert await conn.fetchval(f"SELECT version_num FROM {VERSION_TABLE}") == HEAD_REVISION
            assert await conn.fetchval("SELECT count(*) FROM motia_state WHERE scope = 'procs'") == 8
            assert await conn.fetchval("SELECT count(*) FROM motia_state_changes") == 8
        finally:
            await conn.close()

    asyncio.run(check())


def test_the_migrate_command_through_the_pooler(fresh_db: str, tmp_path: Path) -> None:
    from tests.cli.conftest import run_cli

    url = pgbouncer_url_of(fresh_db)
    check = run_cli("--url", url, "migrate", "--check", cwd=tmp_path)
    assert check.code == 1 and "0001" in check.out, check.err
    done = run_cli("--url", url, "migrate", cwd=tmp_path)
    assert done.code == 0, done.err
    assert json.loads(done.out)["revision"] == HEAD_REVISION
    again = run_cli("--url", url, "migrate", "--check", cwd=tmp_path)
    assert again.code == 0, again.err
    listed = run_cli("--url", url, "list", cwd=tmp_path)
    assert listed.code == 0 and json.loads(listed.out) == {}, listed.err


async def _latencies(reader: StateManager, writer: StateManager, n: int) -> list[float]:
    out: list[float] = []
    async with reader.watch("lat") as changes:
        for i in range(n):
            await asyncio.sleep(0.03 * (i % 5))  # commits land at every phase of the poll
            start = time.perf_counter()
            await writer.set("lat", "k", i)
            change = await asyncio.wait_for(anext(changes), 5)
            out.append(time.perf_counter() - start)
            assert change.new_value == i
    return out


async def test_watch_polls_within_the_latency_bound(tmp_path: Path) -> None:
    reader = await make_pgbouncer(tmp_path)
    writer = StateManager.from_url(PGBOUNCER_URL)  # another process would do the same
    try:
        assert adapter_of(reader).watch_mode == "poll"
        lat = sorted(await _latencies(reader, writer, 40))
        p99 = lat[int(len(lat) * 0.99) - 1]
        assert p99 < 1.0 and statistics.median(lat) < 0.3, lat
    finally:
        await writer.close()
        await reader.close()


async def test_watch_listens_on_listen_url(tmp_path: Path) -> None:
    reader = await make_pgbouncer(tmp_path, listen_url=BOUNCER_DIRECT_URL)
    writer = StateManager.from_url(PGBOUNCER_URL)
    try:
        assert adapter_of(reader).pooled and adapter_of(reader).watch_mode == "listen_url"
        lat = sorted(await _latencies(reader, writer, 20))
        assert statistics.median(lat) < 0.1 and lat[-1] < 1.0, lat
    finally:
        await writer.close()
        await reader.close()


async def test_listen_url_in_the_url_and_in_config(tmp_path: Path) -> None:
    from urllib.parse import quote

    require_pgbouncer()
    in_query = StateManager.from_url(PGBOUNCER_URL + "?listen_url=" + quote(BOUNCER_DIRECT_URL, safe=""))
    config = tmp_path / "config.yml"
    config.write_text(f"state:\n  url: {PGBOUNCER_URL}\n  listen_url: {BOUNCER_DIRECT_URL}\n")
    from_config = StateManager.from_config(config)
    try:
        for store in (in_query, from_config):
            await store.set("s", "k", 1)
            assert adapter_of(store).watch_mode == "listen_url"
    finally:
        await in_query.close()
        await from_config.close()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"listen_url": "redis://:hunter2@h:6379/0"}, "listen_url"),
        ({"listen_url": "not a url hunter2"}, "listen_url"),
        ({"listen_url": "postgresql://u:hunter2@h/db?bogus=1"}, "bogus"),
        ({"listen_url": 5}, "listen_url"),
    ],
)
def test_bad_listen_url_is_refused_without_its_password(options: dict[str, Any], named: str) -> None:
    with pytest.raises(StateConfigError, match=named) as err:
        StateManager.from_url(PGBOUNCER_URL, **options)
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_bad_statement_cache_size_is_refused(value: str) -> None:
    with pytest.raises(StateConfigError, match="statement_cache_size"):
        StateManager.from_url(f"{PGBOUNCER_URL}?statement_cache_size={value}")


async def test_a_startup_parameter_of_the_url_the_pooler_refuses_is_explained() -> None:
    from motia_state import StateBackendError

    require_pgbouncer()
    store = StateManager.from_url(PGBOUNCER_URL + "?options=-c%20work_mem%3D8MB")
    try:
        with pytest.raises(StateBackendError, match="ignore_startup_parameters"):
            await store.get("s", "k")
    finally:
        await store.close()


async def test_schema_through_the_pooler(tmp_path: Path) -> None:
    store = await make_pgbouncer(tmp_path, schema="motia_ci")
    try:
        await store.set("s", "k", 1)
        async with store.watch("s") as changes:
            await store.set("s", "k", 2)
            change = await asyncio.wait_for(anext(changes), 5)
            assert (change.old_value, change.new_value) == (1, 2)
        import asyncpg

        conn = await asyncpg.connect(BOUNCER_DIRECT_URL)
        try:
            assert await conn.fetchval("SELECT value FROM motia_ci.motia_state WHERE key = 'k'") == "2"
        finally:
            await conn.close()
    finally:
        await store.close()
