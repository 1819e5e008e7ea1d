"""Regressions for the bugs reported from a first hour with motia-state: one test (or a few) per report."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateAdapter, StateConfigError, StateManager
from tests.cli.conftest import run_cli
from tests.conftest import ensure_pg_database
from tests.services import PG_TEST_DB, PG_URL, REDIS_URL, require


def _spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_url(query: str) -> str:
    return REDIS_URL.split("?", 1)[0] + "?" + query


def _pg_url(query: str = "", scheme: str = "postgresql") -> str:
    url = scheme + PG_URL[PG_URL.index("://") :]
    return url + ("?" + query if query else "")


async def _round_trip(state: StateManager, scope: str = "first-hour") -> None:
    try:
        await state.set(scope, "k", {"ok": [1, 2.5, "é"]})
        assert await state.get(scope, "k") == {"ok": [1, 2.5, "é"]}
        assert await state.delete(scope, "k") == {"ok": [1, 2.5, "é"]}
    finally:
        await state.close()


# --- 1. a YAML syntax error names the file, line and column, never the line itself ---------------

BROKEN_YAML = [
    pytest.param("state:\n  password: hunter2: xyz\n", id="mapping-in-value"),
    pytest.param('state:\n  password: "hunter2\n', id="unclosed-quote"),
]


@pytest.mark.parametrize("text", BROKEN_YAML)
def test_yaml_error_does_not_quote_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.delenv("MOTIA_STATE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yml").write_text(text)
    with pytest.raises(StateConfigError) as caught:
        StateManager.from_config()
    message = str(caught.value)
    assert "config.yml" in message
    assert "line" in message and "column" in message
    assert "hunter2" not in message
    # the explicit path too
    with pytest.raises(StateConfigError) as by_path:
        StateManager.from_config(tmp_path / "config.yml")
    assert str(tmp_path / "config.yml") in str(by_path.value) and "hunter2" not in str(by_path.value)


@pytest.mark.parametrize("text", BROKEN_YAML)
def test_yaml_error_through_the_cli(tmp_path: Path, text: str) -> None:
    (tmp_path / "config.yml").write_text(text)
    run = run_cli("list", cwd=tmp_path)
    assert run.code == 2, run
    assert run.out == ""
    assert "hunter2" not in run.err
    assert "config.yml" in run.err and "line" in run.err and "Traceback" not in run.err


# --- 2. URL parameters never raise a raw TypeError -------------------------------------------------


@pytest.mark.postgres
async def test_postgres_application_name_reaches_the_server() -> None:
    require("postgres")
    await ensure_pg_database()
    import asyncpg

    name = f"motia-first-hour-{os.getpid()}"
    state = StateManager.from_url(_pg_url(f"application_name={name}"))
    try:
        await state.set("first-hour", "k", 1)
        assert await state.get("first-hour", "k") == 1
        probe = await asyncpg.connect(PG_URL)
        try:
            rows = await probe.fetch(
                "SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
                PG_TEST_DB,
                name,
            )
        finally:
            await probe.close()
        assert [r["application_name"] for r in rows][:1] == [name]
        await state.delete("first-hour", "k")
    finally:
        await state.close()


@pytest.mark.postgres
@pytest.mark.parametrize("query", ["connect_timeout=3", "options=-c%20statement_timeout%3D5000"])
async def test_postgres_url_parameters_work(query: str) -> None:
    require("postgres")
    await ensure_pg_database()
    await _round_trip(StateManager.from_url(_pg_url(query)))


async def test_postgres_unknown_parameter_is_named() -> None:
    # Refused before any connection is made: no server needed (a closed port would be exit 3 otherwise).
    with pytest.raises(StateConfigError) as caught:
        state = StateManager.from_url(f"postgresql://postgres@127.0.0.1:{_spare_port()}/db?foo=1")
        try:
            await state.connect()
        finally:
            await state.close()
    assert "'foo'" in str(caught.value)
    assert not isinstance(caught.value.__cause__, TypeError)


async def test_redis_tls_parameter_needs_rediss() -> None:
    with pytest.raises(StateConfigError) as caught:
        state = StateManager.from_url(_redis_url("ssl_cert_reqs=none"))
        try:
            await state.connect()
        finally:
            await state.close()
    assert "rediss://" in str(caught.value) and "ssl_cert_reqs" in str(caught.value)


async def test_redis_unknown_parameter_is_named() -> None:
    with pytest.raises(StateConfigError) as caught:
        state = StateManager.from_url(_redis_url("foo=1"))
        try:
            await state.connect()
        finally:
            await state.close()
    assert "'foo'" in str(caught.value)


@pytest.mark.redis
async def test_redis_socket_timeout_works() -> None:
    require("redis")
    await _round_trip(StateManager.from_url(_redis_url("socket_timeout=5")))


# --- 3. an unencoded password is masked readably and whole ----------------------------------------


PASTED = "postgresql://postgres:p@ss:w/rd@127.0.0.1:5432/db"


def _assert_masked_readably(message: str) -> None:
    assert "postgres:***@127.0.0.1:5432/db" in message
    assert "***ostgres" not in message
    assert "postgresql://" in message
    for piece in ("p@ss", "ss:w", "w/rd"):
        assert piece not in message, piece


def test_unencoded_password_is_masked_readably() -> None:
    with pytest.raises(StateConfigError) as caught:
        StateManager.from_url(PASTED)
    _assert_masked_readably(str(caught.value))


def test_unencoded_password_is_masked_readably_in_the_cli(tmp_path: Path) -> None:
    run = run_cli("--url", PASTED, "list", cwd=tmp_path)
    assert run.code == 2, run
    assert run.out == ""
    _assert_masked_readably(run.err)
    assert "percent-encode" in run.err or "percent-encoded" in run.err


# --- 4. export to stdout with the store down leaves stdout empty -----------------------------------


def test_export_to_stdout_when_the_store_is_down(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_spare_port()}/db"
    run = run_cli("--url", url, "export", cwd=tmp_path)
    assert run.out == ""
    assert run.code == 3, run
    assert run.err.startswith("motia-state: error: ") and "Traceback" not in run.err


# --- 5. an explicit URL ignores config.yml in the working directory --------------------------------


def test_explicit_url_ignores_a_broken_config_yml(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text('state:\n  password: "hunter2\n')
    listed = run_cli("--url", "memory://", "list", cwd=tmp_path)
    assert listed.code == 0, listed
    assert listed.out == "{}\n"
    by_env = run_cli("groups", "--compact", cwd=tmp_path, env={"MOTIA_STATE_URL": "memory://"})
    assert by_env.code == 0, by_env
    assert by_env.out == "[]\n"


async def test_explicit_url_does_not_take_the_config_ttl(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("state:\n  ttl: 5\n")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert run_cli("--url", url, "set", "s", "k", "1", cwd=tmp_path).code == 0
    env = {"MOTIA_STATE_URL": url}
    assert run_cli("set", "s", "e", "2", cwd=tmp_path, env=env).code == 0
    state = StateManager.from_url(url)
    try:
        assert await state.get_many("s", ["k", "e"]) == {"k": 1, "e": 2}
        assert await state.ttl("s", "k") is None
        assert await state.ttl("s", "e") is None
    finally:
        await state.close()
    # and the ttl command agrees
    left = run_cli("--url", url, "ttl", "s", "k", cwd=tmp_path)
    assert left.code == 0, left
    assert left.out == "null\n"


# --- 6. adapter: postgres / redis with host and port build the right URL ---------------------------


def test_config_adapter_fields_build_the_url(tmp_path: Path) -> None:
    from motia_state.config import load_settings

    path = tmp_path / "config.yml"
    path.write_text("state:\n  adapter: postgres\n  host: db.example\n  port: 5433\n  user: app\n  database: app\n")
    pg = load_settings(path, {})
    assert pg.kind == "postgres"
    assert pg.url.startswith("postgresql://") and "db.example:5433" in pg.url and pg.url.endswith("/app")
    path.write_text("state:\n  adapter: redis\n  host: r.example\n  port: 6380\n")
    rd = load_settings(path, {})
    assert rd.kind == "redis"
    assert rd.url.startswith("redis://") and "r.example:6380" in rd.url


# --- 7. SQLAlchemy-style driver suffixes open the store ---------------------------------------------


async def test_sqlite_pysqlite_url(tmp_path: Path) -> None:
    await _round_trip(StateManager.from_url(f"sqlite+pysqlite:///{tmp_path / 'd.db'}"))


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql+psycopg2"])
async def test_postgres_driver_suffix_urls(scheme: str) -> None:
    require("postgres")
    await ensure_pg_database()
    await _round_trip(StateManager.from_url(_pg_url(scheme=scheme)), scope=f"first-hour-{scheme}")


# --- 8. a bad TTL reads naturally ----------------------------------------------------------------


def test_bad_ttl_message_reads_naturally() -> None:
    with pytest.raises(StateConfigError) as caught:
        StateManager.from_url("memory://", ttl="abc")
    message = str(caught.value)
    assert "could not convert" not in message
    assert "ttl" in message and "'abc'" in message


# --- 9. a scope reported twice by a custom adapter is listed once ----------------------------------


class RepeatingAdapter(StateAdapter):
    """A user's adapter whose list_groups reports a scope twice (e.g. one per shard)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Any] = {}

    async def get(self, scope: str, key: str) -> Any:
        return self.data.get((scope, key))

    async def set(self, scope: str, key: str, value: Any) -> None:
        self.data[(scope, key)] = value

    async def delete(self, scope: str, key: str) -> None:
        self.data.pop((scope, key), None)

    async def clear(self, scope: str) -> None:
        for k in [k for k in self.data if k[0] == scope]:
            del self.data[k]

    async def cleanup(self) -> None:
        return None

    async def keys(self, scope: str) -> list[str]:
        return [k for s, k in self.data if s == scope]

    async def list_groups(self) -> list[str]:
        scopes = sorted({s for s, _ in self.data})
        return scopes + scopes[:1]  # the first scope twice


async def test_scopes_are_never_repeated() -> None:
    state = StateManager(RepeatingAdapter())
    await state.set("a", "k1", 1)
    await state.set("a", "k2", 2)
    await state.set("b", "k", 3)
    assert await state.list_groups() == ["a", "b"]
    items = await state.items()
    assert [(i.scope, i.key, i.value) for i in items] == [("a", "k1", 1), ("a", "k2", 2), ("b", "k", 3)]
    assert [(i.scope, i.key) for i in await state.items(limit=2)] == [("a", "k1"), ("a", "k2")]
    await state.close()


# --- 10. SetResult is a mapping; type= rebuilds values --------------------------------------------


@dataclass
class Booking:
    seats: int
    city: str


async def test_set_result_is_a_mapping() -> None:
    state = StateManager.from_url("memory://")
    first = await state.set("s", "k", {"seats": 1})
    assert first["new_value"] == {"seats": 1}
    assert first.get("old_value") is None
    second = await state.set("s", "k", {"seats": 2})
    assert dict(second) == {"old_value": {"seats": 1}, "new_value": {"seats": 2}}
    assert second.get("old_value") == {"seats": 1} and second.get("nope", "dflt") == "dflt"
    assert "new_value" in second and len(second) == 2
    updated = await state.update("s", "k", [{"type": "increment", "path": "seats"}])
    assert dict(updated) == {"old_value": {"seats": 2}, "new_value": {"seats": 3}}
    await state.close()


async def test_type_on_list_get_many_items() -> None:
    state = StateManager.from_url("memory://")
    await state.set("b", "one", {"seats": 2, "city": "Paris"})
    await state.set("b", "two", {"seats": 5, "city": "Lyon"})
    assert await state.list("b", type=Booking) == [Booking(2, "Paris"), Booking(5, "Lyon")]
    assert await state.get_many("b", ["two", "missing", "one"], type=Booking) == {
        "two": Booking(5, "Lyon"),
        "one": Booking(2, "Paris"),
    }
    items = await state.items("b", type=Booking)
    assert [(i.key, i.value) for i in items] == [("one", Booking(2, "Paris")), ("two", Booking(5, "Lyon"))]
    filtered = await state.items("b", filters=[{"path": "city", "op": "eq", "value": "Lyon"}], type=Booking)
    assert [i.value for i in filtered] == [Booking(5, "Lyon")]
    assert await state.get("b", "one", type=Booking) == Booking(2, "Paris")
    await state.close()
