"""Code run in spawn children (importable, because ``spawn`` children import their target)."""

from __future__ import annotations

import asyncio

from motia_state import StateManager, ops


def increment_many(url: str, scope: str, key: str, times: int) -> None:
    """Open a store and increment ``key``'s counter ``times`` times, one update at a time."""

    async def run() -> None:
        state = StateManager.from_url(url, migrate="off", pool_size=2)
        try:
            for _ in range(times):
                await state.update(scope, key, [ops.increment("n")])
        finally:
            await state.close()

    asyncio.run(run())
