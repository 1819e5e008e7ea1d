"""The worker module of ``bench.triggers``: ``motia-state worker bench.trigger_app:state``.

``BENCH_TRIGGER_URL`` is the store; the handler does nothing, except for values carrying ``sent`` (the
writer's clock), whose delay from write to handler it appends to ``BENCH_TRIGGER_LOG``.
``BENCH_TRIGGER_NAME`` names the trigger (default ``bench``): a new name starts at the current revision.
``BENCH_TRIGGER_PROFILE``, if set, is where this worker writes a pyinstrument text profile when it stops.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

from motia_state import Change, StateManager

state = StateManager.from_url(os.environ["BENCH_TRIGGER_URL"])
_LOG = Path(os.environ.get("BENCH_TRIGGER_LOG", os.devnull))
_PROFILE = os.environ.get("BENCH_TRIGGER_PROFILE")

if _PROFILE:
    from pyinstrument import Profiler

    _profiler = Profiler(interval=0.0005)
    _profiler.start()
    _profile_path = Path(_PROFILE)

    @atexit.register  # the worker stops gracefully on SIGTERM, so this runs
    def _write_profile() -> None:
        _profiler.stop()
        _profile_path.write_text(_profiler.output_text(unicode=True, color=False), encoding="utf-8")


@state.on_change(
    os.environ.get("BENCH_TRIGGER_NAME", "bench"),
    scope="bench-trigger",
    lease=float(os.environ.get("BENCH_TRIGGER_LEASE", "3")),
)
async def handle(change: Change) -> None:
    value = change.new_value
    if isinstance(value, dict) and "sent" in value:
        with _LOG.open("a") as f:  # noqa: ASYNC230 (one short line: the benchmark's own log)
            f.write(f"{time.time() - value['sent']:.6f}\n")
