"""The worker module of ``bench.triggers``: ``motia-state worker bench.trigger_app:state``.

``BENCH_TRIGGER_URL`` is the store; the handler does nothing, except for values carrying ``sent`` (the
writer's clock), whose delay from write to handler it appends to ``BENCH_TRIGGER_LOG``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from motia_state import Change, StateManager

state = StateManager.from_url(os.environ["BENCH_TRIGGER_URL"])
_LOG = Path(os.environ.get("BENCH_TRIGGER_LOG", os.devnull))


@state.on_change("bench", scope="bench-trigger", lease=float(os.environ.get("BENCH_TRIGGER_LEASE", "3")))
async def handle(change: Change) -> None:
    value = change.new_value
    if isinstance(value, dict) and "sent" in value:
        with _LOG.open("a") as f:  # noqa: ASYNC230 (one short line: the benchmark's own log)
            f.write(f"{time.time() - value['sent']:.6f}\n")
