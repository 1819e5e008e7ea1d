"""SPEC §10 under outages: a watch whose server goes away and comes back resumes by itself with nothing lost
or repeated; a server that stays away makes iteration raise StateBackendError; ``close()`` ends watches and
leaves no connection behind. On the test's own Postgres and Redis instances (stopped and restarted).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from motia_state import Change, StateBackendError, StateManager, changes
from tests.reliability.servers import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.timeout(180)

CONNECT_TIMEOUT = 2.0
SCOPE = "watched"
BEFORE, AFTER = 20, 20
WITHIN = 30.0  # seconds: a bound on a hang, not a measurement


async def _write(state: StateManager, start: int, count: int) -> None:
    for i in range(start, start + count):
        await state.set(SCOPE, f"k{i % 7}", {"i": i})


async def _resumes_after_restart(url: str, stop: Callable[[], None], start: Callable[[], None]) -> None:
    writer = StateManager.from_url(url, connect_timeout=CONNECT_TIMEOUT)
    watcher = StateManager.from_url(url, connect_timeout=CONNECT_TIMEOUT)
    try:
        got: list[Change] = []
        async with watcher.watch(SCOPE) as stream:
            await _write(writer, 0, BEFORE)
            async with asyncio.timeout(WITHIN):
                while len(got) < BEFORE:
                    got.append(await anext(stream))
            # The watch is waiting for more when the server goes away for a few seconds.
            waiting = asyncio.ensure_future(anext(stream))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(stop)
            await asyncio.sleep(3)
            await asyncio.to_thread(start)
            async with asyncio.timeout(WITHIN):
                while True:  # the writer's own manager reconnects on its next call
                    try:
                        await _write(writer, BEFORE, AFTER)
                        break
                    except StateBackendError:
                        await asyncio.sleep(0.2)
                got.append(await waiting)
                while len(got) < BEFORE + AFTER:
                    got.append(await anext(stream))
        assert [c.new_value["i"] for c in got] == list(range(BEFORE + AFTER))
        assert all(b.revision > a.revision for a, b in itertools.pairwise(got))
    finally:
        await writer.close()
        await watcher.close()


async def _raises_when_server_stays_away(url: str, stop: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changes, "RECONNECT_FOR", 4.0)
    state = StateManager.from_url(url, connect_timeout=CONNECT_TIMEOUT)
    try:
        async with state.watch(SCOPE) as stream:
            waiting = asyncio.ensure_future(anext(stream))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(stop)
            with pytest.raises(StateBackendError):
                async with asyncio.timeout(WITHIN):
                    await waiting
    finally:
        await state.close()


@pytest.mark.postgres
def test_postgres_watch_resumes_after_restart(private_postgres: PrivatePostgres) -> None:
    asyncio.run(_resumes_after_restart(private_postgres.url(), private_postgres.stop, private_postgres.start))


@pytest.mark.redis
def test_redis_watch_resumes_after_restart(private_redis: PrivateRedis) -> None:
    asyncio.run(_resumes_after_restart(private_redis.url(), private_redis.stop, private_redis.start))


@pytest.mark.postgres
def test_postgres_watch_raises_when_the_server_stays_away(
    private_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_raises_when_server_stays_away(private_postgres.url(), private_postgres.stop, monkeypatch))


@pytest.mark.redis
def test_redis_watch_raises_when_the_server_stays_away(
    private_redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_raises_when_server_stays_away(private_redis.url(), private_redis.stop, monkeypatch))


@pytest.mark.postgres
def test_postgres_close_leaves_no_connection_after_watches(private_postgres: PrivatePostgres) -> None:
    """Watches open, one abandoned mid-wait without aclose: after close() the server has no client of ours."""
    import asyncpg  # type: ignore[import-untyped]

    async def main() -> None:
        admin = await asyncpg.connect(private_postgres.url())
        count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'motia-state-leak-test'"
        try:
            state = StateManager.from_url(
                private_postgres.url() + "?application_name=motia-state-leak-test", connect_timeout=CONNECT_TIMEOUT
            )
            kept = state.watch(SCOPE)
            await kept.__aenter__()
            abandoned = state.watch()
            waiting = asyncio.ensure_future(anext(abandoned))
            await asyncio.sleep(0.3)  # subscribed on the first anext: let it subscribe
            await state.set(SCOPE, "k", 1)
            assert (await asyncio.wait_for(anext(kept), WITHIN)).key == "k"
            assert (await asyncio.wait_for(waiting, WITHIN)).key == "k"
            waiting = asyncio.ensure_future(anext(abandoned))
            await asyncio.sleep(0.3)
            assert await admin.fetchval(count) >= 1
            del abandoned
            await state.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(waiting, WITHIN)
            for _ in range(50):
                if await admin.fetchval(count) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await admin.fetchval(count) == 0
        finally:
            await admin.close()

    asyncio.run(main())
