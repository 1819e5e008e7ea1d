"""The reference's booking flow on the configured store (SQLite by default); same code as `motia-state demo`.

Run it with `python examples/booking.py` or `make demo`. See motia_state/demo.py for the steps.
"""

from __future__ import annotations

import asyncio

from motia_state import StateManager
from motia_state.demo import run_demo


async def main() -> None:
    """Open the store like the application would, then run the demo on it."""
    async with StateManager.from_config() as state:
        await run_demo(state)


if __name__ == "__main__":
    asyncio.run(main())
