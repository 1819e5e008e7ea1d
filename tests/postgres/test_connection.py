"""Connecting, options, errors: driver failures become StateBackendError with the password masked."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from motia_state import StateBackendError, StateConfigError, StateManager
from motia_state.backends import resolve
from motia_state.backends.postgres import PostgresAdapter
from motia_state.sql.connect import postgres_target
from motia_state.urls import parse_url
from tests.services import PG_TEST_DB, PG_URL

pytestmark = pytest.mark.postgres

SECRET = "s3cr3t-pw"


def _spare_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dsn_strips_the_driver_and_passes_sslmode_through() -> None:
    def dsn(url: str, sslmode: str | None) -> str:
        return postgres_target(parse_url(url), sslmode).dsn

    assert dsn("postgresql+asyncpg://u:p@h:5/db", None) == "postgresql://u:p@h:5/db"
    target = postgres_target(parse_url("postgres://u@h/db?application_name=x"), None)
    assert (target.dsn, target.server_settings) == ("postgresql://u@h/db", {"application_name": "x"})
    assert dsn("postgresql://u@h/db?sslmode=disable&application_name=x", "require") == (
        "postgresql://u@h/db?sslmode=require"
    )
    with pytest.raises(StateConfigError, match="sslmode"):
        PostgresAdapter(PG_URL, sslmode="sometimes")


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+asyncpg", "postgres"])
async def test_every_url_scheme_works(pg: StateManager, scheme: str) -> None:
    url = scheme + "://" + PG_URL.split("://", 1)[1]
    backend, parsed = resolve(url)
    adapter = backend.create(parsed, {})
    assert isinstance(adapter, PostgresAdapter)
    store = StateManager(adapter)
    try:
        await store.set("s", scheme, 1)
        assert await pg.get("s", scheme) == 1
    finally:
        await store.close()


async def test_sslmode_reaches_the_driver(pg: StateManager) -> None:
    # The test server runs without TLS: sslmode=require must be refused, sslmode=disable must work.
    ok = StateManager.from_url(PG_URL, sslmode="disable")
    try:
        await ok.set("s", "k", 1)
    finally:
        await ok.close()
    for store in (
        StateManager.from_url(PG_URL, sslmode="require", migrate="off", connect_timeout=5),
        StateManager.from_url(PG_URL + "?sslmode=require", migrate="off", connect_timeout=5),
    ):
        with pytest.raises(StateBackendError):
            await store.get("s", "k")
        await store.close()


async def test_connection_refused_is_a_backend_error_without_the_password() -> None:
    port = _spare_port()
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/{PG_TEST_DB}"
    for migrate in ("off", "auto"):
        store = StateManager.from_url(url, migrate=migrate, connect_timeout=3)
        with pytest.raises(StateBackendError) as info:
            await store.get("s", "k")
        err = info.value
        assert err.backend == "postgres"
        assert SECRET not in str(err) and SECRET not in repr(err) and SECRET not in err.url
        assert f"postgres:***@127.0.0.1:{port}" in str(err)
        assert SECRET not in repr(store)
        await store.close()


async def test_unknown_database_says_so() -> None:
    url = PG_URL.rsplit("/", 1)[0] + "/motia_state_b_no_such_db"
    for migrate in ("off", "auto"):
        store = StateManager.from_url(url, migrate=migrate, connect_timeout=5)
        with pytest.raises(StateBackendError, match="motia_state_b_no_such_db"):
            await store.connect()
        await store.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


@pytest.mark.timeout(30)
async def test_connect_timeout_bounds_a_silent_server(silent_server: int) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{silent_server}/db"
    store = StateManager.from_url(url, migrate="off", connect_timeout=0.5)
    with pytest.raises(StateBackendError, match="timeout") as info:
        await store.connect()
    assert SECRET not in str(info.value)
    await store.close()


async def test_pool_size_option() -> None:
    store = StateManager.from_url(PG_URL, pool_size=3)
    try:
        await store.connect()
        adapter = store.adapter
        assert isinstance(adapter, PostgresAdapter)
        assert (adapter._pg.pool.get_min_size(), adapter._pg.pool.get_max_size()) == (1, 3)
    finally:
        await store.close()
    with pytest.raises(StateConfigError):
        StateManager.from_url(PG_URL, pool_size=0)


async def test_close_is_idempotent_and_reconnects(pg: StateManager) -> None:
    await pg.set("s", "k", 1)
    await pg.close()
    await pg.close()
    assert await pg.get("s", "k") == 1


async def _kill_my_connections(sql: Any) -> int:
    # Only the backends of this test database (ours), never anyone else's.
    n = await sql.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        PG_TEST_DB,
    )
    return int(n)


async def test_works_again_after_its_connections_are_killed(pg: StateManager, sql: Any) -> None:
    await pg.set("s", "k", 1)
    assert await _kill_my_connections(sql) >= 1
    # Reads retry once on a lost connection; a write after that finds a healthy pool.
    assert await pg.get("s", "k") == 1
    assert (await pg.set("s", "k", 2)).old_value == 1
    assert await _kill_my_connections(sql) >= 1
    await asyncio.sleep(0.05)  # let the loop notice the closed sockets: the pool then reconnects itself
    assert (await pg.update("s", "k", [{"type": "set", "path": "", "value": 3}])).old_value == 2
    assert await pg.keys("s") == ["k"]


async def test_lost_connection_mid_write_is_a_backend_error(pg: StateManager, sql: Any) -> None:
    await pg.set("s", "k", 1)
    killer = asyncio.create_task(_kill_after(sql, 0.2))
    # A write in flight when its connection dies is not retried (it may have run): a clear error instead.
    with pytest.raises(StateBackendError):
        await _slow_write(pg)
    await killer
    assert await pg.get("s", "k") == 1


async def _kill_after(sql: Any, delay: float) -> None:
    await asyncio.sleep(delay)
    await _kill_my_connections(sql)


async def _slow_write(pg: StateManager) -> None:
    adapter = pg.adapter
    assert isinstance(adapter, PostgresAdapter)
    await adapter._pg.run("execute", "SELECT pg_sleep(5)", (), read=False)


async def test_command_timeout_turns_a_blocked_write_into_a_backend_error(pg: StateManager, sql: Any) -> None:
    await pg.set("s", "k", 1)
    store = StateManager.from_url(PG_URL, command_timeout=0.3, migrate="off")
    try:
        async with sql.transaction():
            # Another session holds the row lock: the write waits until the command timeout.
            await sql.execute("SELECT 1 FROM motia_state WHERE scope = 's' AND key = 'k' FOR UPDATE")
            with pytest.raises(StateBackendError, match="timeout"):
                await store.set("s", "k", 2)
            assert await store.get("s", "k") == 1  # readers are never blocked by the lock
        assert (await store.set("s", "k", 3)).old_value == 1
    finally:
        await store.close()


def test_driver_errors_are_translated_with_advice_and_no_password() -> None:
    import asyncpg  # type: ignore[import-untyped]

    adapter = PostgresAdapter(f"postgresql://app:{SECRET}@db.example:5432/prod")
    cases: list[tuple[Exception, str]] = [
        (asyncpg.InvalidPasswordError('password authentication failed for user "app"'), "check the user and password"),
        (asyncpg.InvalidCatalogNameError('database "prod" does not exist'), "CREATE DATABASE"),
        (asyncpg.UndefinedTableError('relation "motia_state" does not exist'), "motia-state migrate"),
        (ConnectionRefusedError(111, "Connection refused"), "check that Postgres is running"),
        (TimeoutError(), "timeout"),
    ]
    for exc, advice in cases:
        err = adapter.translate_error(exc)
        assert isinstance(err, StateBackendError), exc
        assert advice in str(err) and SECRET not in str(err) and "app:***@db.example:5432/prod" in str(err)
        assert err.__cause__ is exc
    assert adapter.translate_error(KeyError("not a driver error")) is None


def test_malformed_url_is_a_config_error_that_shows_no_part_of_the_password() -> None:
    with pytest.raises(StateConfigError, match="percent-encoded") as info:
        PostgresAdapter("postgresql://app:p@ss:w/rd@db.example:5432/prod")
    assert "ss:w" not in str(info.value) and "w/rd" not in str(info.value)
    # Several hosts (asyncpg failover) are a valid location.
    PostgresAdapter("postgresql://app@db1.example:5432,db2.example:5432/prod")
