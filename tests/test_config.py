"""SPEC §1: from_url, from_config, config.yml, MOTIA_STATE_URL, errors naming file, key and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from motia_state import StateConfigError, StateManager
from motia_state.config import load_settings, settings_from_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MOTIA_STATE_URL", raising=False)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:///.motia/motia.state.db", "sqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite"),
        ("sqlite:///:memory:", "sqlite"),
        ("postgresql://u:pw@h:5432/db", "postgres"),
        ("postgresql+asyncpg://h/db", "postgres"),
        ("postgres://h/db", "postgres"),
        ("redis://:pw@h:6379/0", "redis"),
        ("rediss://h:6380/1", "redis"),
        ("memory://", "memory"),
    ],
)
def test_url_schemes(url: str, kind: str) -> None:
    assert settings_from_url(url, {}).kind == kind


def test_unknown_scheme_names_the_allowed_ones() -> None:
    with pytest.raises(StateConfigError, match="mysql") as info:
        StateManager.from_url("mysql://root:secret@h/db")
    assert "postgresql" in str(info.value) and "secret" not in str(info.value)
    with pytest.raises(StateConfigError):
        StateManager.from_url("not a url")


def test_from_url_options() -> None:
    state = StateManager.from_url("memory://", ttl=5)
    assert state.default_ttl == 5
    with pytest.raises(StateConfigError, match="unknown option 'bogus'"):
        StateManager.from_url("memory://", bogus=1)
    with pytest.raises(StateConfigError, match="ttl"):
        StateManager.from_url("memory://", ttl=-1)
    with pytest.raises(StateConfigError, match="does not apply"):
        StateManager.from_url("memory://", key_prefix="x:")


def test_default_is_sqlite_file() -> None:
    settings = load_settings(None, {})
    assert settings.kind == "sqlite"
    assert settings.url == "sqlite:///.motia/motia.state.db"


def test_config_file_fields(tmp_path: Path) -> None:
    write(tmp_path, "state:\n  adapter: redis\n  host: cache\n  port: 6380\n  password: p@ss:w/rd\n  ttl: 3600\n")
    settings = load_settings(None, {})
    assert settings.kind == "redis"
    assert settings.url == "redis://:p%40ss%3Aw%2Frd@cache:6380/0"
    assert settings.ttl == 3600
    assert "p@ss" not in repr(settings) and "p%40ss" not in repr(settings)
    write(tmp_path, "state:\n  adapter: postgres\n  user: app\n  password: pw\n  database: prod\n  migrate: check\n")
    settings = load_settings(None, {})
    assert settings.url == "postgresql://app:pw@localhost:5432/prod"
    assert settings.options == {"migrate": "check"}
    write(tmp_path, "state:\n  adapter: sqlite\n  path: data/state.db\n")
    assert load_settings(None, {}).url == "sqlite:///data/state.db"
    write(tmp_path, "state:\n  adapter: memory\n")
    assert load_settings(None, {}).kind == "memory"


def test_env_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST_X", "db.internal")
    write(
        tmp_path, "state:\n  adapter: postgres\n  host: ${PGHOST_X}\n  port: ${PGPORT_X:-6543}\n  ttl: ${TTL_X:-60}\n"
    )
    settings = load_settings(None, {})
    assert settings.url == "postgresql://db.internal:6543/postgres"
    assert settings.ttl == 60
    write(tmp_path, "state:\n  adapter: postgres\n  password: ${MISSING_PW_X}\n")
    with pytest.raises(StateConfigError, match="MISSING_PW_X"):
        load_settings(None, {})


def test_env_url_wins_over_file_and_explicit_url_wins_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "state:\n  adapter: redis\n  key_prefix: 'app:'\n  ttl: 10\n")
    monkeypatch.setenv("MOTIA_STATE_URL", "memory://")
    settings = load_settings(None, {})
    assert settings.kind == "memory"
    # An environment URL takes no option from a config.yml it did not name (its ttl, its key_prefix).
    assert settings.ttl is None
    assert load_settings(write(tmp_path, "state:\n  ttl: 10\n"), {}).ttl == 10  # named explicitly: applies
    assert load_settings(None, {}, url="sqlite:///x.db").kind == "sqlite"
    assert StateManager.from_url("sqlite:///y.db").adapter.backend == "sqlite"


def test_keyword_options_override_config(tmp_path: Path) -> None:
    write(tmp_path, "state:\n  adapter: memory\n  ttl: 10\n")
    assert StateManager.from_config(ttl=99).default_ttl == 99


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("state:\n  adapter: mongo\n", "state.adapter 'mongo' is unknown"),
        ("state:\n  colour: blue\n", "unknown key state.colour"),
        ("state:\n  adapter: redis\n  port: many\n", "port"),
        ("state:\n  ttl: -5\n", "ttl"),
        ("state:\n  migrate: sometimes\n", "auto, check, off"),
        ("state:\n  url: ftp://x\n", "unknown URL scheme"),
        ("state: [1, 2]\n", "'state' must be a mapping"),
        ("state:\n  adapter: redis\n  url: postgresql://h/db\n", "state.adapter is 'redis'"),
        ("state: {adapter: redis\n", "not valid YAML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(StateConfigError) as info:
        StateManager.from_config()
    assert needle in str(info.value)
    assert str(path.name) in str(info.value)


def test_bad_config_never_shows_password(tmp_path: Path) -> None:
    write(tmp_path, "state:\n  adapter: redis\n  password: hunter2\n  port: nope\n")
    with pytest.raises(StateConfigError) as info:
        StateManager.from_config()
    assert "hunter2" not in str(info.value)


def test_file_adapter_is_sqlite_with_deprecation_warning(tmp_path: Path) -> None:
    write(tmp_path, "state:\n  adapter: file\n")
    with pytest.warns(DeprecationWarning, match="file"):
        settings = load_settings(None, {})
    assert settings.kind == "sqlite"


def test_explicit_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(StateConfigError, match="not found"):
        StateManager.from_config(tmp_path / "nope.yml")


def test_config_path_argument(tmp_path: Path) -> None:
    other = tmp_path / "conf" / "my.yml"
    other.parent.mkdir()
    other.write_text("state:\n  adapter: memory\n  ttl: 7\n")
    state = StateManager.from_config(other)
    assert state.adapter.backend == "memory" and state.default_ttl == 7


def test_sqlalchemy_url_carries_libpq_sslmode_as_asyncpg_ssl() -> None:
    from motia_state.sql.connect import postgres_target

    settings = settings_from_url("postgres://u@h/db?sslmode=require&application_name=x", {})
    assert settings.options == {"sslmode": "require"}
    target = postgres_target(settings.store_url, settings.options["sslmode"])
    assert target.dsn == "postgresql://u@h/db?sslmode=require"
    assert target.server_settings == {"application_name": "x"}


@pytest.mark.parametrize(
    ("written", "expected"),
    [("off", False), ("on", True), ("false", False), ("true", True), ('"off"', False), ('"ON"', True)],
)
def test_changes_option_in_config_yml(tmp_path: Path, written: str, expected: bool) -> None:
    path = write(tmp_path, f"state:\n  adapter: memory\n  changes: {written}\n  changes_retention: 600\n")
    settings = load_settings(path, {})
    assert settings.options["changes"] is expected
    assert settings.options["changes_retention"] == 600.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("state:\n  adapter: sqlite\n  changes: sometimes\n", "changes must be on or off"),
        ("state:\n  adapter: redis\n  changes_retention: -5\n", "changes_retention must be a number > 0"),
        ("state:\n  adapter: postgres\n  changes_retention: soon\n", "changes_retention"),
    ],
)
def test_bad_changes_options_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(StateConfigError, match=needle) as raised:
        load_settings(path, {})
    assert "config.yml" in str(raised.value)


def test_changes_option_from_url_query_and_keyword() -> None:
    assert settings_from_url("sqlite:///x.db?changes=off", {}).options["changes"] is False
    assert settings_from_url("memory://", {"changes": "on", "changes_retention": 5}).options == {
        "changes": True,
        "changes_retention": 5.0,
    }
    with pytest.raises(StateConfigError, match="changes"):
        StateManager.from_url("memory://", changes="maybe")


async def test_store_opened_with_changes_off_refuses_watch_naming_the_option(tmp_path: Path) -> None:
    path = write(tmp_path, "state:\n  adapter: memory\n  changes: off\n")
    state = StateManager.from_config(path)
    with pytest.raises(StateConfigError, match="changes: off"):
        state.watch()
    await state.set("s", "k", 1)
    assert await state.get("s", "k") == 1
