"""A SQLite writer killed with SIGKILL mid-stream: the file stays intact and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.reliability import workers
from tests.reliability.common import SPAWN, open_store

pytestmark = pytest.mark.timeout(180)

ROUNDS = 3
# Acknowledged lines to wait for before each kill, so the kill lands mid-stream (varied per round).
KILL_AFTER = (150, 40, 400)
WAIT_LIMIT = 60.0


def _acked(ack_file: Path) -> list[str]:
    if not ack_file.exists():
        return []
    text = ack_file.read_text()
    return text.split("\n")[:-1]  # only complete lines; a line is written by one write() call


def test_sigkilled_sqlite_writer_leaves_intact_file_with_every_acknowledged_write(tmp_path: Path) -> None:
    """SIGKILL during writes (3 times, on one file): integrity_check ok, every acknowledged write present."""
    db = tmp_path / "crash.db"
    url = f"sqlite:///{db}"
    ack_file = tmp_path / "acks.txt"
    start = 0
    for round_no in range(ROUNDS):
        proc = SPAWN.Process(target=workers.crash_writer, args=(url, str(ack_file), start))
        before = len(_acked(ack_file))
        proc.start()
        try:
            deadline = time.monotonic() + WAIT_LIMIT
            while len(_acked(ack_file)) - before < KILL_AFTER[round_no]:
                assert proc.is_alive(), f"the writer died on its own (exit code {proc.exitcode})"
                assert time.monotonic() < deadline, "the writer acknowledged too few writes in time"
                time.sleep(0.01)
        finally:
            proc.kill()  # SIGKILL, our own child, by its handle
            proc.join(30)
        assert proc.exitcode == -9
        lines = _acked(ack_file)
        start = 1 + max(int(line.split()[1]) for line in lines if line.startswith("set "))

        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

        async def verify(lines: list[str] = lines, kills: int = round_no + 1) -> None:
            async with open_store(url) as state:
                stored = {it.key: it.value for it in await state.items("crash")}
                for line in lines:
                    kind, *rest = line.split()
                    if kind == "set":
                        i = int(rest[0])
                        assert stored.get(f"k{i}") == {"i": i, "pad": "x" * (i % 300), "list": list(range(i % 7))}
                    elif kind == "many":
                        i = int(rest[0])
                        for j in range(3):
                            assert stored.get(f"m{i}-{j}") == {"i": i, "j": j}
                incs = sum(1 for line in lines if line == "inc")
                hits = stored.get("hits", {"n": 0})["n"]
                # Every acknowledged increment is there; each kill may add one committed but unacknowledged.
                assert incs <= hits <= incs + kills, (incs, hits)

        asyncio.run(verify())
