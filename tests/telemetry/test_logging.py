"""``logging.getLogger("motia_state")``: migrations, reconnects, compaction and trigger retries are logged;
operations never are at INFO (SPEC §13's companion: what an operator reads)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from motia_state import Change, StateManager


def _ours(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "motia_state" and r.levelno >= level]


async def test_a_migration_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="motia_state")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    async with StateManager.from_url(url) as state:
        await state.set("s", "k", 1)
    (record,) = _ours(caplog)
    assert "migrated the schema from revision (empty) to" in record.getMessage()
    caplog.clear()
    async with StateManager.from_url(url) as state:  # already at head: nothing to say
        await state.get("s", "k")
    assert _ours(caplog) == []


async def test_operations_log_nothing_at_info(backend: str, open_store: Any, caplog: pytest.LogCaptureFixture) -> None:
    state = await open_store()  # its migration, if any, is said before the operations
    caplog.set_level(logging.INFO, logger="motia_state")
    caplog.clear()
    scope = f"q-{uuid.uuid4().hex[:8]}"
    for i in range(50):
        await state.set(scope, f"k{i}", i)
        await state.get(scope, f"k{i}")
        await state.update(scope, f"k{i}", [{"type": "set", "path": "", "value": i + 1}])
    await state.items(scope)
    await state.set_many(scope, {"a": 1, "b": 2})
    await state.delete_many(scope, ["a", "b"])
    await state.clear(scope)
    assert _ours(caplog) == []


async def test_a_trigger_retry_and_a_parked_change_are_warnings(
    open_store: Any, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    import motia_state.triggers as triggers

    monkeypatch.setattr(triggers, "MAX_BACKOFF", 0.01)
    state = await open_store()
    scope = f"r-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.INFO, logger="motia_state")

    @state.on_change(f"retries-{scope}", scope=scope, start="beginning", max_attempts=2, lease=3)
    async def handler(change: Change) -> None:
        raise RuntimeError("boom")

    task = asyncio.ensure_future(state.run_triggers())
    try:
        await state.set(scope, "k", 1)
        for _ in range(400):
            if any("parked" in r.getMessage() for r in _ours(caplog)):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    messages = [r.getMessage() for r in _ours(caplog, logging.WARNING)]
    assert any("failed (attempt 1 of 2), retrying" in m for m in messages), messages
    assert any("failed 2 times, parked" in m for m in messages), messages


@pytest.mark.redis
async def test_a_redis_request_sent_again_is_a_warning(caplog: pytest.LogCaptureFixture, monkeypatch: Any) -> None:
    """A connection lost under a request (redis-py mends the ones lost between requests by itself)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from tests.services import require

    require("redis")
    async with StateManager.from_url(
        "redis://127.0.0.1:6379/12", key_prefix=f"otel-log:{uuid.uuid4().hex[:8]}:"
    ) as state:
        await state.get("s", "k")
        conn = state.adapter._conn  # type: ignore[attr-defined]
        real = conn._execute
        failures = [RedisConnectionError("Connection closed by server.")]

        async def flaky(client: Any, commands: Any) -> Any:
            if failures:
                raise failures.pop()
            return await real(client, commands)

        monkeypatch.setattr(conn, "_execute", flaky)
        caplog.set_level(logging.INFO, logger="motia_state")
        assert await state.get("s", "k") is None  # an idempotent read is sent again
    (record,) = _ours(caplog)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "127.0.0.1:6379" in message and "Connection closed by server" in message
    assert "sending the request again" in message


async def test_compaction_is_logged(backend: str, open_store: Any, caplog: pytest.LogCaptureFixture) -> None:
    state = await open_store(changes_retention=0.2)
    scope = f"c-{uuid.uuid4().hex[:8]}"
    for i in range(5):
        await state.set(scope, f"k{i}", i)
    await asyncio.sleep(0.5)
    await state.set(scope, "newest", 1)  # compaction always keeps the newest change
    caplog.set_level(logging.INFO, logger="motia_state")
    await state.cleanup()
    records = [r for r in _ours(caplog) if "compacted" in r.getMessage()]
    assert len(records) >= 1, [r.getMessage() for r in _ours(caplog)]
    assert all(r.levelno == logging.INFO for r in records)
    assert "older than 0.2 s (changes_retention)" in records[0].getMessage()
