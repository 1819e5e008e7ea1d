"""Motia's own Node packages for the interop tests: installed once into a cache folder, driven by one script.

The packages (pinned in :data:`PACKAGES`) are installed with npm into ``$XDG_CACHE_HOME/motia-state/node-<version>``
(``~/.cache`` when unset; ``MOTIA_STATE_TEST_NODE_CACHE`` names another folder), outside the repository, and
reused by later sessions when the marker file there names the same pins. ``driver.mjs`` is copied next to
``node_modules`` so its imports resolve; each :meth:`Motia.call` runs it once with a JSON request on stdin.

Without node or npm, or when the install fails, the tests that need them skip, except under CI=true, where they
fail: CI is meant to run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.services import IN_CI

MOTIA_VERSION = "0.17.14-beta.196"
PACKAGES = {
    "@motiadev/adapter-redis-state": MOTIA_VERSION,
    "@motiadev/core": MOTIA_VERSION,
}
# node-redis 5 (the Redis adapter's client) needs Node 18.
MIN_NODE_MAJOR = 18
# What is installed (part of the marker: changing it reinstalls). --ignore-scripts: nothing the tests import
# needs an install script (esbuild's only checks its binary); --omit=optional: nor esbuild's platform
# binaries, half of the download.
NPM_SELECTION = ("--omit=dev", "--omit=optional", "--ignore-scripts")
# How npm fetches: the npm cache first; few, short retries, so that no network fails in seconds, not minutes.
NPM_FETCH = (
    "--prefer-offline",
    "--fetch-retries=1",
    "--fetch-retry-mintimeout=1000",
    "--fetch-retry-maxtimeout=5000",
    "--no-audit",
    "--no-fund",
    "--no-update-notifier",
    "--loglevel=error",
)
# Below pytest-timeout's 300 s per test, so that a stuck install is reported as such.
INSTALL_TIMEOUT = 240.0
CALL_TIMEOUT = 60.0
DRIVER = Path(__file__).with_name("driver.mjs")
MARKER = ".motia-state-installed.json"


def unavailable(reason: str) -> NoReturn:
    """Skip (laptop) or fail (CI=true) when Motia's Node packages cannot be run here."""
    if IN_CI:
        pytest.fail(f"CI=true requires Node and Motia's packages: {reason}", pytrace=False)
    pytest.skip(reason)


def cache_dir() -> Path:
    """Where the packages are installed: outside the repository, one folder per Motia version."""
    explicit = os.environ.get("MOTIA_STATE_TEST_NODE_CACHE")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "motia-state" / f"node-{MOTIA_VERSION}"


def _wanted() -> dict[str, Any]:
    return {"dependencies": PACKAGES, "npm_install": list(NPM_SELECTION)}


def _installed(root: Path) -> bool:
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker == _wanted()) and all(
        (root / "node_modules" / name / "package.json").is_file() for name in PACKAGES
    )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold a lock beside ``root`` so that two test sessions never install into it at once."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _node_major(node: str) -> int:
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    version = done.stdout.strip().lstrip("v")
    try:
        return int(version.split(".")[0])
    except ValueError:
        unavailable(f"`{node} --version` printed {done.stdout!r} {done.stderr!r}")


def install(root: Path, npm: str) -> float | None:
    """Install the pinned packages into ``root`` unless already there; the seconds npm took, None if reused."""
    with _locked(root):
        if _installed(root):
            return None
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        manifest = {
            "name": "motia-state-interop",
            "private": True,
            "type": "module",
            "description": "Motia's Node packages for motia-state's tests/interop (installed by tests/interop/node.py)",
            "dependencies": PACKAGES,
        }
        (root / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        env = {**os.environ, "npm_config_update_notifier": "false"}
        start = time.monotonic()
        try:
            done = subprocess.run(
                [npm, "install", *NPM_SELECTION, *NPM_FETCH],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            unavailable(f"npm install of {_pins()} did not finish in {INSTALL_TIMEOUT:.0f} s (in {root})")
        took = time.monotonic() - start
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            unavailable(f"npm install of {_pins()} failed (exit {done.returncode}, in {root}):\n{tail}")
        (root / MARKER).write_text(json.dumps(_wanted(), indent=2) + "\n")
        return took


def _pins() -> str:
    return " ".join(f"{name}@{version}" for name, version in PACKAGES.items())


class NodeError(AssertionError):
    """A driver run that failed: the request and what Node printed."""


@dataclass(frozen=True)
class Motia:
    """Motia's installed Node packages; :meth:`redis` and :meth:`file` run calls on one of its adapters."""

    node: str
    root: Path
    install_seconds: float | None  # None: reused an earlier install

    def run(self, request: dict[str, Any]) -> list[Any]:
        """Run the driver once on ``request``; the results of its calls."""
        done = subprocess.run(
            [self.node, str(self.root / DRIVER.name)],
            cwd=self.root,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise NodeError(f"node exited {done.returncode} on {request!r}:\n{done.stderr.strip()}")
        try:
            results: list[Any] = json.loads(done.stdout)
        except ValueError:
            raise NodeError(f"node printed no JSON for {request!r}: {done.stdout!r} {done.stderr!r}") from None
        return results

    async def redis(
        self, url: str, *calls: list[Any], key_prefix: str | None = None, ttl: int | None = None
    ) -> list[Any]:
        """``calls`` (each ``[method, *args]``) on one ``RedisStateAdapter({url}, {keyPrefix, ttl})``, in order."""
        options: dict[str, Any] = {}
        if key_prefix is not None:
            options["keyPrefix"] = key_prefix
        if ttl is not None:
            options["ttl"] = ttl
        request = {"adapter": "redis", "url": url, "options": options, "calls": list(calls)}
        return await asyncio.to_thread(self.run, request)

    async def file(self, directory: Path, *calls: list[Any]) -> list[Any]:
        """``calls`` on one ``FileStateAdapter({filePath: directory})`` (it writes ``directory/motia.state.json``)."""
        request = {"adapter": "file", "dir": str(directory), "calls": list(calls)}
        return await asyncio.to_thread(self.run, request)


def prepare() -> Motia:
    """Find node and npm, install the packages (or reuse them), put the driver beside them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        unavailable(f"{missing} not found on PATH; install Node.js >= {MIN_NODE_MAJOR} to run the interop tests")
    major = _node_major(node)
    if major < MIN_NODE_MAJOR:
        unavailable(f"Node {major} is too old for Motia's packages; they need Node >= {MIN_NODE_MAJOR}")
    root = cache_dir()
    took = install(root, npm)
    # The driver is the test suite's: refreshed every session, atomically (another session may be running it).
    staged = root / f".{DRIVER.name}.{os.getpid()}"
    staged.write_bytes(DRIVER.read_bytes())
    staged.replace(root / DRIVER.name)
    return Motia(node, root, took)


# What this session's ``motia`` fixture did, for the summary line of tests/interop/conftest.py.
PREPARED: list[Motia] = []


@pytest.fixture(scope="session")
def motia() -> Motia:
    """Motia's Node packages, installed once per session (skipped without Node, failed under CI=true)."""
    prepared = prepare()
    PREPARED.append(prepared)
    return prepared
