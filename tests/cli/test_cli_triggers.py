"""``motia-state triggers`` / ``triggers retry`` / ``worker`` through the console script (SPEC §9, §11)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from motia_state import Change, StateManager
from motia_state import triggers as engine


async def _until(store: Any, check: Any) -> None:
    async with asyncio.timeout(20):
        while not check(await store.status()):  # noqa: ASYNC110 (polling another component's state)
            await asyncio.sleep(0.05)


async def _park_one(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a trigger whose handler fails on one key until that change is parked; leave one change pending."""
    monkeypatch.setattr(engine, "MAX_BACKOFF", 0.01)
    state = StateManager.from_url(url)

    @state.on_change("confirm", scope="bookings", max_attempts=2)
    async def confirm(c: Change) -> None:
        if c.key == "bad":
            raise ValueError(f"cannot confirm {c.key}")

    await state.connect()
    store = state.adapter.trigger_store()  # type: ignore[attr-defined]
    task = asyncio.ensure_future(state.run_triggers())
    try:
        await _until(store, lambda s: bool(s and s[0].owners))  # registered: it starts at the current revision
        await state.set("bookings", "good", 1)
        await state.set("bookings", "bad", 2)
        await _until(store, lambda s: bool(s[0].parked) and s[0].handled == 1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await state.set("bookings", "later", 3)  # written while no worker runs: the lag
    await state.close()


async def test_triggers_lists_position_lag_and_parked_changes_then_retry(
    acli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    await _park_one(url, monkeypatch)
    [row] = (await acli("--url", url, "triggers")).ok().json()
    assert row["name"] == "confirm"
    assert row["handled"] == 1 and row["lag_changes"] >= 1 and row["lag_seconds"] >= 0
    assert row["position"] + row["lag_changes"] == row["start_revision"] + 3
    [parked] = row["parked"]
    assert (parked["scope"], parked["key"], parked["attempts"]) == ("bookings", "bad", 2)
    assert parked["error"] == "ValueError: cannot confirm bad" and parked["retry_requested"] is False
    lines = (await acli("--url", url, "triggers", "--jsonl")).ok().out.splitlines()
    assert len(lines) == 1
    assert (await acli("--url", url, "triggers", "retry", "confirm")).ok().json() == {
        "trigger": "confirm",
        "retrying": 1,
    }
    [row] = (await acli("--url", url, "triggers")).ok().json()
    assert row["parked"][0]["retry_requested"] is True
    missing = await acli("--url", url, "triggers", "retry", "nope")
    assert missing.code == 1 and "no trigger named 'nope'" in missing.err


def test_triggers_on_an_empty_store_prints_an_empty_list(cli: Any, tmp_path: Path) -> None:
    assert cli("--url", f"sqlite:///{tmp_path / 'empty.db'}", "triggers").ok().json() == []


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no_such_module_here", "cannot import 'no_such_module_here'"),
        ("json", "json holds 0 StateManager objects"),
        ("json:loads", "'loads' is not a StateManager"),
        (":state", "MODULE[:ATTR]"),
    ],
)
def test_worker_refuses_what_is_not_a_store_with_triggers(cli: Any, spec: str, needle: str) -> None:
    run = cli("worker", spec)
    assert run.code == 2 and needle in run.err


def test_worker_refuses_a_store_without_triggers(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "plain_app.py").write_text(
        "from motia_state import StateManager\nstate = StateManager.from_url('memory://')\n"
    )
    run = cli("worker", "plain_app:state")
    assert run.code == 2 and "no trigger is registered" in run.err
