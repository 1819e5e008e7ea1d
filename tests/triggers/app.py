"""A user's module for the worker tests: ``motia-state worker tests.triggers.app:state``.

Configured by environment variables: the store URL, the log file every handled change is appended to (one
JSON line, one write), the trigger's lease, and a key whose first handling hangs (to be SIGKILLed).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from motia_state import Change, StateManager

state = StateManager.from_url(os.environ["TRIGGER_TEST_URL"])
LOG = Path(os.environ["TRIGGER_TEST_LOG"])
HANG_KEY = os.environ.get("TRIGGER_TEST_HANG_KEY", "")


def _log(**fields: object) -> None:
    line = json.dumps({**fields, "pid": os.getpid(), "t": time.time()}) + "\n"
    with LOG.open("a") as f:  # O_APPEND: one short write per line, whole lines from every process
        f.write(line)


@state.on_change("jobs", scope="jobs", concurrency=4, lease=float(os.environ.get("TRIGGER_TEST_LEASE", "30")))
async def handle(change: Change) -> None:
    _log(kind="start", revision=change.revision, key=change.key)
    marker = LOG.with_suffix(".hung")
    if change.key == HANG_KEY and not marker.exists():
        marker.write_text(str(os.getpid()))
        await asyncio.sleep(3600)  # the test kills this process here
    await asyncio.sleep(0.01)
    _log(kind="done", revision=change.revision, key=change.key, value=change.new_value)
