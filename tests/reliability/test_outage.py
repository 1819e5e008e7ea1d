"""Postgres and Redis stopped and restarted under a running writer, on the test's own server instance.

During the outage every operation must fail with StateBackendError within the configured connect timeout
plus a margin (a bound on a hang, enforced with ``asyncio.timeout``, not a speed measurement); afterwards
the SAME StateManager must work again with every acknowledged write still there.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from motia_state import StateBackendError, StateManager
from tests.reliability.servers import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.timeout(150)

CONNECT_TIMEOUT = 2.0
# Generous: the machine is shared and slow; what matters is that nothing waits for ever.
HANG_BOUND = CONNECT_TIMEOUT + 8.0
SCOPE = "outage"

Op = Callable[[StateManager], Awaitable[Any]]

OPERATIONS: dict[str, Op] = {
    "get": lambda s: s.get(SCOPE, "k0"),
    "set": lambda s: s.set(SCOPE, "during", 1),
    "update": lambda s: s.update(SCOPE, "counter", [{"type": "increment", "path": "n"}]),
    "delete": lambda s: s.delete(SCOPE, "absent"),
    "ttl": lambda s: s.ttl(SCOPE, "k0"),
    "keys": lambda s: s.keys(SCOPE),
    "list": lambda s: s.list(SCOPE),
    "items": lambda s: s.items(SCOPE, filters=[{"path": "i", "op": "gte", "value": 0}]),
    "items_all": lambda s: s.items(),
    "list_groups": lambda s: s.list_groups(),
    "get_many": lambda s: s.get_many(SCOPE, ["k0", "k1"]),
    "set_many": lambda s: s.set_many(SCOPE, {"m1": 1, "m2": 2}),
    "delete_many": lambda s: s.delete_many(SCOPE, ["absent1", "absent2"]),
    "clear": lambda s: s.clear("outage-other"),
    "cleanup": lambda s: s.cleanup(),
}


class Writer:
    """Writes ``k<i>`` = {"i": i} in a loop; remembers acknowledged writes and what each failure was."""

    def __init__(self, state: StateManager) -> None:
        self.state = state
        self.acked: dict[str, int] = {}
        self.failures: list[StateBackendError] = []
        self.foreign: list[str] = []
        self.restarted = False
        self.failures_after_restart: list[str] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"k{i}"
            try:
                async with asyncio.timeout(HANG_BOUND):
                    await self.state.set(SCOPE, key, {"i": i})
                self.acked[key] = i
            except StateBackendError as exc:
                self.failures.append(exc)
                if self.restarted:
                    self.failures_after_restart.append(str(exc))
                await asyncio.sleep(0.02)
            except TimeoutError:
                self.foreign.append(f"set of {key} hung for more than {HANG_BOUND}s")
            except Exception:
                self.foreign.append(traceback.format_exc())
            i += 1
            await asyncio.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()

    async def wait_acked(self, n: int, limit: float = 30.0) -> None:
        """Wait until ``n`` more writes are acknowledged."""
        target = len(self.acked) + n
        async with asyncio.timeout(limit):
            while len(self.acked) < target:
                assert not self.foreign, self.foreign
                await asyncio.sleep(0.01)

    async def wait_failures(self, n: int, limit: float = 30.0) -> None:
        target = len(self.failures) + n
        async with asyncio.timeout(limit):
            while len(self.failures) < target:
                assert not self.foreign, self.foreign
                await asyncio.sleep(0.01)


async def _fails_fast(state: StateManager, name: str, op: Op, backend: str) -> None:
    try:
        async with asyncio.timeout(HANG_BOUND):
            await op(state)
    except StateBackendError as exc:
        assert exc.backend == backend
        assert backend in str(exc)
        return
    except TimeoutError:
        pytest.fail(f"{name} hung during the outage for more than {HANG_BOUND}s (connect_timeout={CONNECT_TIMEOUT})")
    pytest.fail(f"{name} succeeded while the {backend} server was stopped")


async def _scenario(state: StateManager, backend: str, stop: Callable[[], None], start: Callable[[], None]) -> None:
    await state.set(SCOPE, "counter", {"n": 0})
    writer = Writer(state)
    task = asyncio.create_task(writer.run())
    try:
        await writer.wait_acked(30)
        await asyncio.to_thread(stop)

        await writer.wait_failures(3)
        for name, op in OPERATIONS.items():
            await _fails_fast(state, name, op, backend)

        await asyncio.to_thread(start)
        writer.restarted = True
        # The very first call after the restart, on the same manager, works.
        async with asyncio.timeout(HANG_BOUND):
            assert await state.get(SCOPE, "k0") == {"i": 0}
            await state.update(SCOPE, "counter", [{"type": "increment", "path": "n"}])
        await writer.wait_acked(30)
    finally:
        writer.stop()
        await task

    assert not writer.foreign, writer.foreign
    assert writer.failures_after_restart == [], "writes failed after the server was back"
    assert writer.failures, "no write failed during the outage: was the server really stopped?"
    stored = {it.key: it.value for it in await state.items(SCOPE)}
    lost = [k for k, i in writer.acked.items() if stored.get(k) != {"i": i}]
    assert lost == [], f"{len(lost)} acknowledged writes lost across the restart, e.g. {lost[:5]}"
    # The update tried while the server was down did nothing; the one after the restart counted once.
    assert stored["counter"] == {"n": 1}
    for op in OPERATIONS.values():
        async with asyncio.timeout(HANG_BOUND):
            await op(state)  # every operation works again


@pytest.mark.postgres
def test_postgres_outage_fails_fast_then_same_manager_recovers_with_nothing_lost(
    private_postgres: PrivatePostgres,
) -> None:
    """Postgres stopped (fast shutdown) and started mid-run under a writer."""

    async def main() -> None:
        state = StateManager.from_url(private_postgres.url(), connect_timeout=CONNECT_TIMEOUT)
        try:
            await _scenario(state, "postgres", private_postgres.stop, private_postgres.start)
        finally:
            await state.close()

    asyncio.run(main())


@pytest.mark.redis
def test_redis_outage_fails_fast_then_same_manager_recovers_with_nothing_lost(private_redis: PrivateRedis) -> None:
    """Redis shut down cleanly (append-only file) and started mid-run under a writer."""

    async def main() -> None:
        state = StateManager.from_url(private_redis.url(), connect_timeout=CONNECT_TIMEOUT)
        try:
            await _scenario(state, "redis", private_redis.stop, private_redis.start)
        finally:
            await state.close()

    asyncio.run(main())
