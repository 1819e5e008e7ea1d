"""Every fenced code block of README.md and docs/*.md runs here, one test per block (id: ``file:line``).

How each kind of block is checked:

- ``python``: executed in a fresh module, in a temporary working directory (so the default SQLite file
  ``.motia/motia.state.db`` lands there) and without ``MOTIA_STATE_*`` variables. Top-level ``await`` is
  allowed; managers left in the module are closed afterwards. A block whose first line is a comment naming a
  pytest file (``# test_booking.py``, ``# conftest.py``) is written under that name and run by pytest.
- ``yaml``: written as ``config.yml`` and loaded with ``load_settings``; every ``${VAR}`` without a default
  is set to a placeholder, every ``${VAR:-default}`` is left unset so the default is used.
- ``sql sqlite`` / ``sql postgres``: each statement runs on a real ``motia_state`` table holding a few
  entries: a SQLite file made by a ``StateManager``, or the Postgres test database (inside a transaction
  that is rolled back).
- ``bash``: each line starting with ``motia-state`` runs in the temporary directory with the script next to
  this interpreter; it must exit 0, or N when the line ends with a comment ``# exits N``. ``export NAME=...``
  lines set the environment of the lines after them. Any other command fails the test: the block must be
  made runnable or marked.
- ``json`` and ``toml`` must parse; ``text`` is skipped.

A block is not run when the line just before its fence is ``<!-- not run: REASON -->``; the test is skipped
with that reason.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tomllib
import traceback
import types
import unicodedata
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from motia_state import StateManager
from motia_state.config import load_settings
from tests.services import PG_URL, require

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.*?)\s*-->$")
_PYTEST_FILE = re.compile(r"^#\s*(?P<name>conftest\.py|test_\w+\.py)\s*$")
_ENV_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<default>:-[^}]*)?\}")
_EXPECTED_EXIT = re.compile(r"\s#\s+exits\s+(?P<code>\d+)\b")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its info string, its text, and why it is not run (if it is not)."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    flavour: str
    body: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"


def parse_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page; ValueError for a fence that is never closed."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        info = opening["info"].split()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        else:
            raise ValueError(f"{page.relative_to(ROOT)}:{i + 1}: the code fence is never closed")
        marker = _NOT_RUN.match(lines[i - 1].strip()) if i > 0 else None
        blocks.append(
            Block(
                page=page,
                line=i + 1,
                lang=info[0].lower() if info else "",
                flavour=" ".join(info[1:]).lower(),
                body="\n".join(body) + "\n",
                not_run=marker["reason"] if marker else None,
            )
        )
        i = j + 1
    return blocks


def _all_blocks() -> list[Block]:
    found: list[Block] = []
    for page in PAGES:
        with contextlib.suppress(ValueError):  # reported by test_every_fence_is_closed
            found += parse_blocks(page)
    return found


BLOCKS = _all_blocks()


def _sql_flavour(block: Block) -> str | None:
    if block.flavour in ("sqlite", "postgres"):
        return block.flavour
    first = block.body.lstrip().splitlines()[0] if block.body.strip() else ""
    comment = first.removeprefix("--").strip().lower() if first.startswith("--") else ""
    return comment if comment in ("sqlite", "postgres") else None


def _param(block: Block) -> Any:
    postgres = block.lang == "sql" and _sql_flavour(block) == "postgres" and block.not_run is None
    return pytest.param(block, id=block.id, marks=[pytest.mark.postgres] if postgres else [])


# --- the environment every block runs in -------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, and no MOTIA_STATE_* variable from the caller's environment."""
    for name in list(os.environ):
        if name.startswith("MOTIA_STATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTIA_STATE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


# --- python ------------------------------------------------------------------------------------------------


def _managers(namespace: dict[str, Any]) -> Iterator[StateManager]:
    """The StateManagers a block left behind, directly or inside a list, tuple or dict."""
    for value in list(namespace.values()):
        candidates = (
            value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else [value]
        )
        for candidate in candidates:
            if isinstance(candidate, StateManager):
                yield candidate


async def _close_all(namespace: dict[str, Any]) -> None:
    for manager in _managers(namespace):
        with contextlib.suppress(Exception):
            await manager.close()


def _compile(block: Block, mode: str = "exec") -> types.CodeType:
    tree = ast.parse(block.body, filename=str(block.page), mode=mode)
    ast.increment_lineno(tree, block.line)  # tracebacks point at the line in the Markdown page
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    return compile(tree, str(block.page), mode, flags=flags, dont_inherit=True)


def _block_traceback(block: Block, exc: BaseException) -> str:
    """The frames from the block down, not the whole page that pytest would print as the block's source."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, f in enumerate(frames) if f.filename == str(block.page)), 0)
    frames = frames[first:]
    page = block.id.rsplit(":", 1)[0]
    where = next((f"{page}:{f.lineno}" for f in reversed(frames) if f.filename == str(block.page)), block.id)
    detail = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(exc))
    return f"the block raised {type(exc).__name__} at {where}:\n{detail}"


def run_python(block: Block, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failure = None
    try:
        _run_python(block, workdir, monkeypatch)
    except Exception as exc:
        failure = _block_traceback(block, exc)
    finally:
        _forget_telemetry_providers()
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def _forget_telemetry_providers() -> None:
    """A block may set OpenTelemetry's global providers (the README's tracing set-up): the blocks and tests
    after it run without them, as in a process of their own."""
    with contextlib.suppress(ImportError):
        from tests.telemetry.providers import reset_globals

        reset_globals()


def _run_python(block: Block, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(f"docs_block_{abs(hash(block.id))}")
    module.__file__ = str(workdir / "block.py")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    code = _compile(block)
    if code.co_flags & inspect.CO_COROUTINE:

        async def main() -> None:
            try:
                await eval(code, namespace)
            finally:
                await _close_all(namespace)

        asyncio.run(main())
        return
    try:
        exec(code, namespace)
    finally:
        asyncio.run(_close_all(namespace))


# A user's project would set this in its pytest configuration; the file runs in a directory that has none.
_PYTEST_OPTIONS = ("-o", "asyncio_default_fixture_loop_scope=function")


def run_pytest_file(block: Block, name: str, workdir: Path) -> None:
    (workdir / name).write_text(block.body, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(workdir),
            *_PYTEST_OPTIONS,
            name,
        ],
        cwd=workdir,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"pytest {name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}", pytrace=False)


# --- yaml --------------------------------------------------------------------------------------------------


def run_yaml(block: Block, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _ENV_VAR.finditer(block.body):
        if var["default"] is None:
            monkeypatch.setenv(var["name"], f"docs-{var['name'].lower()}")
        else:
            monkeypatch.delenv(var["name"], raising=False)
    document = yaml.safe_load(block.body)
    assert isinstance(document, dict) and isinstance(document.get("state"), dict), "a config.yml needs a state: block"
    path = workdir / "config.yml"
    path.write_text(block.body, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # adapter: file says it is deprecated
        settings = load_settings(path, {})
    state = settings.build(StateManager)  # builds the adapter (checks its options) without connecting
    asyncio.run(state.close())


# --- sql ---------------------------------------------------------------------------------------------------

_SEED: list[tuple[str, str, Any, float | None]] = [
    ("orders", "o1", {"status": "confirmed", "total": 120, "customer": {"name": "Ada"}}, None),
    ("orders", "o2", {"status": "pending", "total": 35, "customer": {"name": "Grace"}}, 3600.0),
    ("orders", "o3", {"status": "confirmed", "total": 9, "customer": {"name": "Edsger"}}, None),
    ("trace-123", "booking", {"venue": "Hall A", "seats": 2}, None),
    ("trace-123", "payment.status", "pending", 900.0),
]


def _statements(body: str) -> list[str]:
    """The statements of a block: each ends with a line ending in ';'."""
    out: list[str] = []
    current: list[str] = []
    for line in body.splitlines():
        if not line.strip() or (line.lstrip().startswith("--") and not current):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


def run_sqlite(block: Block, workdir: Path) -> None:
    async def seed() -> None:
        async with StateManager.from_config() as state:  # the default file, in the working directory
            for scope, key, value, ttl in _SEED:
                await state.set(scope, key, value, ttl=ttl)
            await state.set("orders", "expired", {"status": "confirmed"}, ttl=0.001)
        await asyncio.sleep(0.01)

    asyncio.run(seed())
    conn = sqlite3.connect(workdir / ".motia" / "motia.state.db")
    try:
        for statement in _statements(block.body):
            conn.execute(statement).fetchall()
        conn.rollback()
    finally:
        conn.close()


def run_postgres(block: Block) -> None:
    require("postgres")
    import asyncpg  # type: ignore[import-untyped]

    from tests.conftest import ensure_pg_database

    async def run() -> None:
        await ensure_pg_database()
        async with StateManager.from_url(PG_URL):  # connecting creates or migrates the table
            pass
        conn = await asyncpg.connect(PG_URL)
        try:
            transaction = conn.transaction()
            await transaction.start()
            try:
                now = datetime.now(UTC)
                rows = [
                    (s, k, json.dumps(v), None if t is None else now + timedelta(seconds=t)) for s, k, v, t in _SEED
                ]
                rows.append(("orders", "expired", json.dumps({"status": "confirmed"}), now - timedelta(seconds=5)))
                await conn.executemany(
                    "INSERT INTO motia_state (scope, key, value, expires_at) VALUES ($1, $2, $3::jsonb, $4)"
                    " ON CONFLICT (scope, key) DO NOTHING",
                    rows,
                )
                for statement in _statements(block.body):
                    await conn.fetch(statement)
            finally:
                await transaction.rollback()
        finally:
            await conn.close()

    asyncio.run(run())


# --- bash --------------------------------------------------------------------------------------------------


def _shell_lines(body: str) -> Iterator[tuple[int, str]]:
    """(offset, line) of each logical line, with backslash continuations joined."""
    pending = ""
    start = 0
    for offset, line in enumerate(body.splitlines(), start=1):
        if not pending:
            start = offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _command_words(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    while words and _ASSIGNMENT.match(words[0]):
        words.pop(0)
    return words


def run_bash(block: Block, workdir: Path) -> None:
    if not (BIN / "motia-state").is_file():
        pytest.fail(f"no motia-state script next to {sys.executable}; run: make test (or pip install -e .)")
    env = _clean_env()
    ran = 0
    failures: list[str] = []
    for offset, line in _shell_lines(block.body):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{block.page.relative_to(ROOT).as_posix()}:{block.line + offset}"
        words = _command_words(stripped)
        if words and words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                env[name] = value
            continue
        if not words or words[0] != "motia-state":
            pytest.fail(
                f"{where}: {stripped!r} is not a motia-state command; make the block runnable or put"
                " '<!-- not run: REASON -->' on the line before its fence",
                pytrace=False,
            )
        expected = _EXPECTED_EXIT.search(stripped)
        code = int(expected["code"]) if expected else 0
        done = subprocess.run(
            ["bash", "-c", stripped], cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        ran += 1
        if done.returncode != code:
            # The later lines still run: one report lists every line that fails.
            failures.append(
                f"{where}: {stripped}\n  exited {done.returncode}, expected {code}\n"
                f"  stdout: {done.stdout.strip()[:2000]}\n  stderr: {done.stderr.strip()[:2000]}"
            )
    if not ran:
        pytest.fail("the block has no motia-state command to run", pytrace=False)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


# --- the tests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_code_block(block: Block, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.not_run is not None:
        pytest.skip(f"not run: {block.not_run}")
    if block.lang == "python":
        lines = block.body.splitlines()
        pytest_file = _PYTEST_FILE.match(lines[0]) if lines else None
        if pytest_file:
            run_pytest_file(block, pytest_file["name"], workdir)
        else:
            run_python(block, workdir, monkeypatch)
    elif block.lang in ("yaml", "yml"):
        run_yaml(block, workdir, monkeypatch)
    elif block.lang == "sql":
        flavour = _sql_flavour(block)
        if flavour == "sqlite":
            run_sqlite(block, workdir)
        elif flavour == "postgres":
            run_postgres(block)
        else:
            pytest.fail("say which database a sql block is for: ```sql sqlite or ```sql postgres", pytrace=False)
    elif block.lang in ("bash", "sh", "shell"):
        run_bash(block, workdir)
    elif block.lang == "json":
        json.loads(block.body)
    elif block.lang == "toml":
        tomllib.loads(block.body)
    elif block.lang == "jsonl":
        for line in block.body.splitlines():
            if line.strip():
                json.loads(line)
    elif block.lang == "text":
        pytest.skip("text block: nothing to run")
    else:
        pytest.fail(
            f"no runner for ```{block.lang or '(no language)'} blocks: use python, yaml, sql, bash, json, toml or text,"
            " or mark the block '<!-- not run: REASON -->'",
            pytrace=False,
        )


def test_documentation_has_blocks() -> None:
    pages = {b.page.name for b in BLOCKS}
    assert "README.md" in pages
    assert len(pages) > 1, "docs/*.md has no code blocks"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_fence_is_closed(page: Path) -> None:
    parse_blocks(page)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a page."""
    found: set[str] = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_code = not in_code
            continue
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        kept = "".join(c for c in title if c in " -_" or unicodedata.category(c)[0] in "LN")
        found.add(kept.replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_stay_inside_the_repository_and_resolve(page: Path) -> None:
    problems: list[str] = []
    text = page.read_text(encoding="utf-8")
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.MULTILINE | re.DOTALL)
    for link in _LINK.finditer(prose):
        target = link["target"]
        if "://" in target or target.startswith("mailto:"):
            problems.append(f"{target}: links outside the repository")
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: points outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)
