"""Helpers shared by the reliability tests: shared-store URLs and bounded child processes."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable, Sequence
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from tests.conftest import FACTORIES, make_redis_motia
from tests.services import PG_URL, REDIS_URL

MULTIPROCESS_BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis-motia", marks=pytest.mark.redis),
]

# A child process that has not finished by then is hung: it is killed and the test fails.
CHILD_TIMEOUT = 120.0

SPAWN: SpawnContext = multiprocessing.get_context("spawn")


def fresh_shared_store(backend: str, tmp_path: Path) -> str:
    """Empty the test store of ``backend`` (creating its schema) and return a URL other processes can open."""

    async def prepare() -> None:
        store = await {**FACTORIES, "redis-motia": make_redis_motia}[backend](tmp_path)
        try:
            await store.connect()
        finally:
            await store.close()

    asyncio.run(prepare())
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if backend == "postgres":
        return PG_URL
    if backend == "redis":
        return REDIS_URL
    if backend == "redis-motia":
        return REDIS_URL + "?layout=motia"
    raise ValueError(f"no multi-process URL for {backend}")


def run_children(target: Callable[..., None], args_list: Sequence[tuple[Any, ...]]) -> None:
    """Start one spawn child per argument tuple, wait for all within CHILD_TIMEOUT, kill any that hang."""
    procs: list[SpawnProcess] = [SPAWN.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    hung: list[int] = []
    try:
        for p in procs:
            p.join(CHILD_TIMEOUT)
            if p.is_alive():
                hung.append(p.pid or -1)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()  # only our own children, by their handle
                p.join(10)
    assert not hung, f"child processes {hung} did not finish within {CHILD_TIMEOUT}s (hang)"


def open_store(url: str) -> StateManager:
    """A StateManager on ``url`` (for the parent's checks)."""
    return StateManager.from_url(url)
