"""Private, throwaway Postgres and Redis servers for the outage and secrets tests.

Each instance lives in its own temporary directory on a spare port, so the tests can stop and restart it
without touching the shared servers on 5432/6379. When a machine cannot run one (no binaries, no
``postgres`` OS user...), :func:`unavailable` skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

import pytest

from tests.services import IN_CI

PG_BIN = Path(os.environ.get("MOTIA_STATE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORT = 55432
REDIS_PORT = 56379
# How long a server may take to start or stop before the test gives up (a bound, not a measurement).
START_TIMEOUT = 30.0


def unavailable(reason: str) -> NoReturn:
    """Skip (laptop) or fail (CI=true) when a private server cannot be run here."""
    if IN_CI:
        pytest.fail(f"CI=true requires a private server instance: {reason}", pytrace=False)
    pytest.skip(reason)


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int) -> int:
    """``preferred`` if free, else a free port chosen by the OS (a previous run may still hold it)."""
    if port_is_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused_port() -> int:
    """A local port with no listener: connecting to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(predicate_port: int, *, up: bool, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _answers(predicate_port) == up:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not {'start' if up else 'stop'} within {START_TIMEOUT}s")


class PrivatePostgres:
    """A Postgres cluster in ``base`` (owned by the ``postgres`` OS user), trust auth, on a spare port."""

    def __init__(self, base: Path, port: int = PG_PORT) -> None:
        self.base = base
        self.port = pick_port(port)
        self.data = base / "data"
        self.log = base / "postgres.log"
        self.running = False

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Postgres refuses to run as root, hence runuser when the tests run as root.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=START_TIMEOUT, check=False)

    def init(self) -> None:
        """Create the cluster, or skip/fail (CI) with the reason when this machine cannot."""
        initdb = PG_BIN / "initdb"
        if not initdb.exists():
            unavailable(f"no Postgres binaries at {PG_BIN} (set MOTIA_STATE_TEST_PG_BIN)")
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                unavailable("running as root without runuser, cannot start Postgres as the postgres user")
            try:
                shutil.chown(self.base, user="postgres")
            except (LookupError, OSError) as exc:
                unavailable(f"cannot hand {self.base} to the postgres OS user: {exc}")
        done = self._as_postgres(
            str(initdb), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
        )
        if done.returncode != 0:
            unavailable(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        done = self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{log[-2000:]}")
        self.running = True
        _wait(self.port, up=True, what="private Postgres")

    def stop(self) -> None:
        """Fast shutdown: open sessions are ended, committed transactions are kept."""
        done = self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {done.stderr.strip()}")
        self.running = False
        _wait(self.port, up=False, what="private Postgres")

    def url(self, password: str | None = None, database: str = "postgres") -> str:
        """A URL for the server; trust auth accepts any ``password``."""
        auth = "postgres" + (f":{password}" if password is not None else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        """Stop the server if it still runs (best effort, for teardown)."""
        if self.running:
            with contextlib.suppress(Exception):
                self.stop()


class PrivateRedis:
    """A redis-server in ``base`` with an append-only file, so acknowledged writes survive a restart."""

    def __init__(self, base: Path, port: int = REDIS_PORT, password: str | None = None) -> None:
        self.base = base
        self.port = pick_port(port)
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the server on the same port and directory, and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.base),
            "--logfile",
            str(self.base / "redis.log"),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(self.port, up=True, what="private Redis")
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM = a clean shutdown that flushes the append-only file; wait for the process to exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=START_TIMEOUT)
        _wait(self.port, up=False, what="private Redis")

    def url(self, password: str | None = None, db: int = 0) -> str:
        """A URL for the server, with ``password`` (default: the server's own) in it."""
        pw = self.password if password is None else password
        auth = f":{quote(pw, safe='')}@" if pw is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        """Stop the server if it still runs (teardown)."""
        with contextlib.suppress(Exception):
            self.stop()
