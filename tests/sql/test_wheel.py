"""The built wheel carries the migrations: a fresh virtualenv migrates Postgres from an unrelated directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.services import require
from tests.sql.conftest import create_pg_database, drop_pg_database, pg_url_of

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MOTIA_STATE_URL")}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.timeout(600)
async def test_wheel_migrates_postgres_from_any_directory(tmp_path: Path) -> None:
    require("postgres")
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)], cwd=REPO)
    (wheel,) = wheels.glob("motia_state-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path)

    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    db = await create_pg_database()
    try:
        url = pg_url_of(db)
        script = textwrap.dedent(
            f"""
            import asyncio, motia_state.migrate as m
            from motia_state import StateManager
            assert "site-packages" in str(m.migrations_dir()), m.migrations_dir()
            asyncio.run(m.upgrade({url!r}))
            print("current", asyncio.run(m.current({url!r})))
            async def use():
                state = StateManager.from_url({url!r}, migrate="check")
                await state.connect()
                await state.set("s", "k", {{"ok": True}})
                print("value", await state.get("s", "k"))
                await state.close()
            asyncio.run(use())
            print("sql", "CREATE TABLE motia_state" in m.offline_sql({url!r}))
            """
        )
        out = _run([str(python), "-c", script], cwd=elsewhere).stdout
    finally:
        await drop_pg_database(db)
    head = _head()
    assert f"current {head}" in out
    assert "value {'ok': True}" in out
    assert "sql True" in out


def _head() -> str:
    from motia_state.sql.migrate import head

    return head()
