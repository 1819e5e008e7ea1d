"""A writer process for the change-feed tests: ``python -m tests.feed.writer URL WRITER COUNT``.

Alternates an increment of one of a few shared counters (concurrent with the other writers: the per-key
chain of old/new values is then worth checking) and a set of its own key. Each call records one change.
"""

from __future__ import annotations

import asyncio
import sys

from motia_state import StateManager, ops

SCOPE = "feed"
COUNTERS = 5


async def write(url: str, writer: int, count: int) -> None:
    state = StateManager.from_url(url)
    try:
        for i in range(count):
            if i % 2 == 0:
                await state.update(SCOPE, f"counter{i // 2 % COUNTERS}", [ops.increment("n")])
            else:
                await state.set(SCOPE, f"w{writer}-{i}", {"writer": writer, "i": i})
    finally:
        await state.close()


if __name__ == "__main__":
    asyncio.run(write(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
