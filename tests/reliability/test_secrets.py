"""Passwords never appear in exceptions, reprs, log records or CLI output (SPEC §1, §8, §9).

Postgres' trust auth accepts any password, so the failures use a refused port or a nonexistent host and
the success paths put a correct-but-secret password in the URL. Redis gets a real ``requirepass`` on the
test's own instance, so a wrong password is really refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from motia_state import StateBackendError, StateConfigError, StateError, StateManager
from motia_state.config import settings_from_url
from tests.reliability.servers import PrivateRedis, refused_port
from tests.services import PG_URL, require

pytestmark = pytest.mark.timeout(180)

# A plain one, and one that needs percent-encoding in a URL (its raw and encoded forms must both stay hidden).
PASSWORDS = ["Zq9s3cretPW41xK", "p@ss:w/rd%#?\u00e9Z7"]
WATCHED_LOGGERS = (
    "",
    "motia_state",
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "asyncpg",
    "redis",
    "alembic",
)
CONNECT_TIMEOUT = 2.0


def forms(password: str) -> set[str]:
    """Every way the password could be spelled in text: raw and percent-encoded."""
    return {password, quote(password, safe=""), quote(password)}


def assert_clean(text: str, password: str, where: str) -> None:
    for form in forms(password):
        assert form not in text, f"{where} shows the password ({form!r}): {text[:500]!r}"


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` (percent-encoded) as its password."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def exception_texts(exc: BaseException) -> Iterator[tuple[str, str]]:
    """str/repr/args of the exception and of everything chained to it, and the full formatted traceback."""
    yield "formatted traceback", "".join(traceback.format_exception(exc))
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        name = type(e).__name__
        yield f"str({name})", str(e)
        yield f"repr({name})", repr(e)
        yield f"{name}.args", repr(e.args)
        yield f"{name}.__dict__", repr({k: v for k, v in vars(e).items() if k != "__traceback__"})
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + repr(record.args))


@contextmanager
def all_logs_at_debug() -> Iterator[list[str]]:
    """Every log record of every logger (drivers included) at DEBUG, formatted with its traceback."""
    handler = _Collect()
    saved = {name: logging.getLogger(name).level for name in WATCHED_LOGGERS}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in WATCHED_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


async def _failure(url: str) -> list[BaseException]:
    """Build a store on ``url`` and collect the errors of a few operations (each must be a StateError)."""
    errors: list[BaseException] = []
    state = StateManager.from_url(url, connect_timeout=CONNECT_TIMEOUT)
    for call in (lambda: state.get("s", "k"), lambda: state.set("s", "k", 1), lambda: state.list_groups()):
        try:
            async with asyncio.timeout(60):
                await call()
        except StateError as exc:
            errors.append(exc)
        except BaseException as exc:
            pytest.fail(f"a raw {type(exc).__module__}.{type(exc).__name__} escaped: {exc!r}")
        else:
            pytest.fail(f"an operation on the unreachable {url.split(':', 1)[0]} store succeeded")
    errors.append(StateError(repr(state)))  # the manager's repr after the failures, checked with the rest
    await state.close()
    return errors


def _failing_urls(password: str) -> dict[str, str]:
    pw = quote(password, safe="")
    port = refused_port()
    return {
        "postgres refused port": f"postgresql://postgres:{pw}@127.0.0.1:{port}/motia",
        "postgres nonexistent host": f"postgresql://postgres:{pw}@motia-state-nonexistent.invalid:5432/motia",
        "redis refused port": f"redis://:{pw}@127.0.0.1:{port}/0",
        "redis user+password refused port": f"redis://default:{pw}@127.0.0.1:{port}/0",
    }


@pytest.mark.parametrize("password", PASSWORDS)
def test_connection_failures_hide_the_password_in_exceptions_reprs_and_logs(password: str) -> None:
    """Unreachable Postgres/Redis: StateBackendError whose text, chain and traceback never show the password."""
    with all_logs_at_debug() as logs:
        for case, url in _failing_urls(password).items():
            errors = asyncio.run(_failure(url))
            assert any(isinstance(e, StateBackendError) for e in errors), case
            for exc in errors:
                for where, text in exception_texts(exc):
                    assert_clean(text, password, f"{case}: {where}")
            settings = settings_from_url(url, {})
            assert_clean(repr(settings), password, f"{case}: repr(Settings)")
            assert_clean(repr(StateManager.from_url(url)), password, f"{case}: repr(StateManager)")
            assert_clean(repr(StateManager.from_url(url).adapter), password, f"{case}: repr(adapter)")
    assert_clean("\n".join(logs), password, "log records")


@pytest.mark.parametrize("password", PASSWORDS)
def test_config_errors_hide_the_password(password: str) -> None:
    """Bad options or URLs that carry a password: StateConfigError without it."""
    pw = quote(password, safe="")
    bad: list[tuple[str, dict[str, object]]] = [
        (f"postgresql://u:{pw}@127.0.0.1:5432/db", {"key_prefix": "x"}),
        (f"redis://:{pw}@127.0.0.1:6379/0", {"migrate": "auto"}),
        (f"redis://:{pw}@127.0.0.1:6379/0", {"no_such_option": 1}),
        (f"mysql://u:{pw}@127.0.0.1/db", {}),
    ]
    for url, options in bad:
        with pytest.raises(StateConfigError) as info:
            StateManager.from_url(url, **options)
        for where, text in exception_texts(info.value):
            assert_clean(text, password, f"{url.split(':', 1)[0]} {options}: {where}")


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p@ss:w/rd@127.0.0.1:6379/0",
        "redis://user:p@ss:w/rd@127.0.0.1:6379/0",
        "postgresql://postgres:p@ss:w/rd@127.0.0.1:5432/db",
        "rediss://:p@ss:w/rd@127.0.0.1:6379/0",
    ],
)
def test_unencoded_password_in_a_malformed_url_is_not_shown(url: str) -> None:
    """A password pasted without percent-encoding breaks URL parsing; no part of it may be echoed back."""

    async def attempt() -> BaseException:
        try:
            state = StateManager.from_url(url, connect_timeout=CONNECT_TIMEOUT)
            async with asyncio.timeout(60):
                await state.get("s", "k")
        except StateError as exc:
            return exc
        pytest.fail("a malformed URL was accepted")

    exc = asyncio.run(attempt())
    for where, text in exception_texts(exc):
        for fragment in ("ss:w", "w/rd", "p@ss", "/rd@"):  # pieces of the password p@ss:w/rd
            assert fragment not in text, f"{where} shows part of the password ({fragment!r}): {text[:300]!r}"


@pytest.mark.redis
@pytest.mark.parametrize("password", PASSWORDS)
def test_redis_wrong_password_is_refused_without_showing_either_password(password: str, private_dir: Path) -> None:
    """A Redis with requirepass refuses a wrong password: StateBackendError, neither password shown anywhere."""
    server = PrivateRedis(private_dir, password=password)
    server.start()
    try:
        wrong = password[::-1] + "W"
        with all_logs_at_debug() as logs:
            errors = asyncio.run(_failure(server.url(password=wrong)))
        assert any(isinstance(e, StateBackendError) for e in errors)
        for secret in (password, wrong):
            for exc in errors:
                for where, text in exception_texts(exc):
                    assert_clean(text, secret, f"wrong redis password: {where}")
            assert_clean("\n".join(logs), secret, "log records")
    finally:
        server.close()


async def _work(state: StateManager) -> list[str]:
    """A little of everything on a working store; returns the reprs seen along the way."""
    reprs = [repr(state), repr(state.adapter)]
    await state.connect()
    reprs += [repr(state), repr(state.adapter)]
    await state.set("secrets", "k", {"v": 1}, ttl=60)
    await state.update("secrets", "k", [{"type": "increment", "path": "v"}])
    assert await state.get("secrets", "k") == {"v": 2}
    await state.items("secrets", filters=[{"path": "v", "op": "gt", "value": 0}])
    await state.list_groups()
    await state.cleanup()
    await state.clear("secrets")
    await state.close()
    return reprs


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("password", PASSWORDS)
def test_working_stores_never_show_the_password_in_reprs_or_logs(password: str, private_dir: Path) -> None:
    """Postgres (secret password, trust auth) and Redis (requirepass) at work: reprs and DEBUG logs are clean."""
    require("postgres")
    server = PrivateRedis(private_dir, password=password)
    server.start()
    try:
        pg_url = with_password(PG_URL, password)
        with all_logs_at_debug() as logs:
            reprs = asyncio.run(_work(StateManager.from_url(pg_url, connect_timeout=10)))
            reprs += asyncio.run(_work(StateManager.from_url(server.url(), connect_timeout=10)))
            reprs += [repr(settings_from_url(pg_url, {})), repr(settings_from_url(server.url(), {}))]
        assert logs, "no log record was captured: the capture is not working"
        for text in reprs:
            assert_clean(text, password, "repr")
        assert_clean("\n".join(logs), password, "log records")
    finally:
        server.close()


# --- CLI -------------------------------------------------------------------------------------------------------


def _cli() -> str:
    script = Path(sys.executable).with_name("motia-state")
    if not script.exists():
        pytest.fail(f"the motia-state console script is not installed next to {sys.executable}")
    return str(script)


def _run_cli(args: list[str], cwd: Path, env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MOTIA_STATE_URL"}
    if env_url is not None:
        env["MOTIA_STATE_URL"] = env_url
    return subprocess.run([_cli(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.parametrize("password", PASSWORDS)
def test_cli_failures_never_print_the_password(password: str, tmp_path: Path) -> None:
    """``motia-state`` against unreachable stores (by --url, MOTIA_STATE_URL and config.yml): no password."""
    for case, url in _failing_urls(password).items():
        if "nonexistent" in case:
            continue  # same code path as the refused port; keeps the CLI part short
        for args, env_url in (
            (["--url", url, "get", "s", "k"], None),
            (["--url", url, "set", "s", "k", '{"a": 1}'], None),
            (["list"], url),
            (["groups"], url),
        ):
            done = _run_cli(args, tmp_path, env_url)
            assert done.returncode != 0, f"{case} {args}: succeeded against an unreachable store"
            assert done.stderr.strip(), f"{case} {args}: no error message"
            assert_clean(done.stdout + done.stderr, password, f"CLI {case} {args[-3:]}")
    config = tmp_path / "config.yml"
    config.write_text(
        "state:\n  adapter: postgres\n  host: 127.0.0.1\n"
        f"  port: {refused_port()}\n  user: postgres\n  password: '{password}'\n  database: motia\n",
        encoding="utf-8",
    )
    done = _run_cli(["--config", str(config), "list"], tmp_path)
    assert done.returncode != 0
    assert_clean(done.stdout + done.stderr, password, "CLI with a config.yml password")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("password", PASSWORDS)
def test_cli_success_and_wrong_password_never_print_the_password(password: str, private_dir: Path) -> None:
    """``motia-state`` working on Postgres and Redis with a password, and Redis refusing a wrong one."""
    require("postgres")
    server = PrivateRedis(private_dir, password=password)
    server.start()
    try:
        for url in (with_password(PG_URL, password), server.url()):
            for args in (
                ["set", "secrets", "k", '{"a": 1}'],
                ["get", "secrets", "k"],
                ["list", "secrets"],
                ["groups"],
                ["export", "--scope", "secrets"],
                ["clear", "secrets"],
            ):
                done = _run_cli(["--url", url, *args], private_dir)
                assert done.returncode == 0, f"{args}: {done.stderr}"
                assert_clean(done.stdout + done.stderr, password, f"CLI {url.split(':', 1)[0]} {args}")
        pg = with_password(PG_URL, password)
        done = _run_cli(["--url", pg, "migrate", "--check"], private_dir)
        assert_clean(done.stdout + done.stderr, password, "CLI migrate --check")
        wrong = password[::-1] + "W"
        done = _run_cli(["--url", server.url(password=wrong), "get", "secrets", "k"], private_dir)
        assert done.returncode != 0
        for secret in (password, wrong):
            assert_clean(done.stdout + done.stderr, secret, "CLI with a wrong Redis password")
    finally:
        server.close()
