"""Fixtures for the state browser's tests in a real headless Chromium (tests/ui/test_browser.py).

Chromium and chromedriver are the Debian packages ``chromium`` and ``chromium-driver`` (``bash .ci/browser``
installs them); Selenium drives them by their explicit paths, so Selenium Manager never downloads a browser.
Without them the browser tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.services import IN_CI

REPO = Path(__file__).resolve().parents[2]
#: Where the screenshots go: reviewers look here.
SHOTS = REPO / "test-output" / "ui"
CLI = [sys.executable, "-m", "motia_state.cli"]
MISSING = (
    "Chromium and chromedriver are not installed (run: bash .ci/browser, or apt-get install chromium chromium-driver)"
)


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver), or None when either is missing."""

    def find(name: str, fallback: str) -> str | None:
        found = shutil.which(name)
        if found is None and Path(fallback).is_file():
            found = fallback
        return found

    chromium = find("chromium", "/usr/bin/chromium")
    driver = find("chromedriver", "/usr/bin/chromedriver")
    return None if chromium is None or driver is None else (chromium, driver)


def require_chromium() -> tuple[str, str]:
    """The paths, else skip (laptop) or fail (CI=true: a skipped browser test is a failed one)."""
    paths = chromium_paths()
    if paths is not None:
        return paths
    if IN_CI:
        pytest.fail(f"CI=true requires the browser: {MISSING}", pytrace=False)
    pytest.skip(MISSING)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole session."""
    chromium, driver = require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


@dataclass
class Server:
    """A running ``motia-state ui``: its printed URL and its process."""

    url: str
    proc: subprocess.Popen[str]
    args: tuple[str, ...] = field(default=())
    stopped: bool = False

    def stop(self) -> str:
        """SIGINT; it must exit 0 within 10 s. Returns what it wrote on stderr (once stopped: '')."""
        if self.stopped:
            return ""
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            pytest.fail(f"motia-state ui {' '.join(self.args)} did not stop within 10 s of SIGINT")
        assert self.proc.returncode == 0, f"motia-state ui exited {self.proc.returncode} on SIGINT; stderr: {err}"
        return str(err)


def _line_within(stream: IO[str], seconds: float) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(seconds):
            return ""
    return stream.readline()


@pytest.fixture
def ui_server() -> Iterator[Callable[..., Server]]:
    """``start(url, *args)``: ``motia-state --url URL ui --port 0 *args``, once it printed its URL; each one is
    stopped with SIGINT at teardown (and must exit 0 within 10 s)."""
    started: list[Server] = []

    def start(url: str, *args: str) -> Server:
        command = [*CLI, "--url", url, "ui", "--port", "0", *args]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = _line_within(proc.stdout, 20).strip()
        if not line.startswith("http://"):
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"motia-state ui printed no URL within 20 s (got {line!r}); stderr:\n{err}", pytrace=False)
        server = Server(line, proc, tuple(args))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def shot(driver: Any, name: str) -> Path:
    """Save a screenshot of the whole page (up to 4000 px tall) as ``test-output/ui/<name>.png``; return its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    size = driver.get_window_size()
    inner, page = driver.execute_script(
        "return [window.innerHeight, Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)]"
    )
    taller = min(page, 4000) > inner
    if taller:  # the window grows to the page for the picture, then shrinks back
        driver.set_window_size(size["width"], size["height"] - inner + min(page, 4000))
    try:
        assert driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
    finally:
        if taller:
            driver.set_window_size(size["width"], size["height"])
    return path


def outside_write(url: str, scope: str, key: str, value: Any, *args: str) -> float:
    """A write made by another process: ``motia-state --url URL set SCOPE KEY JSON``; returns when (monotonic
    time) that process exited, i.e. just after the write committed."""
    command = [*CLI, "--url", url, "set", scope, key, json.dumps(value), *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, f"motia-state set exited {run.returncode}: {run.stderr}"
    return time.monotonic()
