"""The installed ``motia-state`` console script (the one beside this interpreter), run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).with_name("motia-state")


def run_script(*args: str, cwd: Path) -> dict[str, Any]:
    """``motia-state ARGS`` in ``cwd`` without any MOTIA_STATE_* variable; exit 0 expected; its JSON summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTIA_STATE_")}
    ran = subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert ran.returncode == 0, f"motia-state {' '.join(args)} exited {ran.returncode}: {ran.stderr}"
    summary: dict[str, Any] = json.loads(ran.stdout)
    return summary
