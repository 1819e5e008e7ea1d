"""Process entry points for the multi-process tests (importable by multiprocessing's spawn)."""

from __future__ import annotations

import asyncio


def increment_many(url: str, times: int, start: object) -> None:
    """Open a store and increment ``counter`` ``times`` times, one update each."""
    start.wait(60)  # type: ignore[attr-defined]

    async def main() -> None:
        from motia_state import StateManager

        state = StateManager.from_url(url, busy_timeout=30.0)
        try:
            for _ in range(times):
                await state.update("mp", "counter", [{"type": "increment", "path": "n", "by": 1}])
        finally:
            await state.close()

    asyncio.run(main())


def auto_migrate(url: str, start: object) -> None:
    """Connect with migrate=auto on a (probably empty) database and write one row named after the pid."""
    start.wait(60)  # type: ignore[attr-defined]

    async def main() -> None:
        import os

        from motia_state import StateManager

        state = StateManager.from_url(url)
        try:
            await state.set("boot", str(os.getpid()), True)
        finally:
            await state.close()

    asyncio.run(main())
