"""``motia-state migrate``: --check, upgrade, --sql, and a store refusing an out-of-date schema."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from motia_state.sql.migrate import head
from tests.conftest import ensure_pg_database
from tests.services import PG_URL, require


def test_sqlite_check_upgrade_and_refusal(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("state:\n  migrate: check\n")  # the default SQLite file, never migrated
    check = cli("migrate", "--check")
    assert check.out.split() == ["0001", "0002", "0003", head()]
    assert "out of date" in check.failed_cleanly() and "motia-state migrate" in check.err

    refused = cli("list")
    assert "motia-state migrate" in refused.failed_cleanly()

    done = cli("migrate").ok().json()
    assert done == {"url": "sqlite:///.motia/motia.state.db", "revision": head()}
    assert (tmp_path / ".motia" / "motia.state.db").is_file()
    again = cli("migrate", "--check").ok()
    assert again.out == "" and "up to date" in again.err
    assert cli("list").ok().json() == {}


def test_sqlite_offline_sql_for_a_dba(cli: Any, tmp_path: Path) -> None:
    sql = cli("--url", f"sqlite:///{tmp_path / 'never.db'}", "migrate", "--sql").ok().out
    assert "CREATE TABLE motia_state" in sql and "motia_state_alembic_version" in sql
    assert not (tmp_path / "never.db").exists()  # offline: nothing touched


@pytest.mark.postgres
def test_postgres_check_and_sql_without_password(cli: Any) -> None:
    require("postgres")
    asyncio.run(ensure_pg_database())  # this test may run before any fixture has created the database
    cli("--url", PG_URL, "migrate").ok()
    assert "up to date" in cli("--url", PG_URL, "migrate", "--check").ok().err
    parts = urlsplit(PG_URL)
    secret_url = urlunsplit(parts._replace(netloc=f"dba:T0pS3cret@{parts.hostname}:{parts.port or 5432}"))
    run = cli("--url", secret_url, "migrate", "--sql").ok()
    assert "CREATE TABLE motia_state" in run.out and "jsonb" in run.out.lower()
    assert "T0pS3cret" not in run.out + run.err


def test_schemaless_stores(cli: Any) -> None:
    run = cli("--url", "memory://", "migrate").ok()
    assert run.out == "" and "no schema to migrate" in run.err
    assert "no SQL schema" in cli("--url", "redis://:pw@127.0.0.1:1/0", "migrate", "--sql").failed_cleanly(2)


def test_postgres_migrate_accepts_libpq_sslmode(cli: Any) -> None:
    require("postgres")
    asyncio.run(ensure_pg_database())
    url = PG_URL + "?sslmode=disable"
    cli("--url", url, "migrate").ok()
    assert "up to date" in cli("--url", url, "migrate", "--check").ok().err
