"""SQLite adapter specifics: files and URLs, processes sharing a file, SQL filters, stored format, errors."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.backends import resolve
from motia_state.backends.sqlite import SQLiteAdapter
from motia_state.backends.sqlite.filters import compile_filters
from motia_state.backends.sqlite.statements import CLEANUP_BATCH
from motia_state.errors import StateBackendError, StateConfigError
from motia_state.ops import FILTER_OPS, Filter, match
from motia_state.sql import CHANGES_TABLE
from motia_state.sql.connect import sqlalchemy_url, sqlite_path
from motia_state.urls import parse_url
from tests.sql import _workers


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- URLs and files --------------------------------------------------------------------------------------


def test_url_helpers() -> None:
    assert sqlalchemy_url(parse_url("sqlite:///a/b.db")) == "sqlite+aiosqlite:///a/b.db"
    assert sqlalchemy_url(parse_url("sqlite+aiosqlite:////abs/b.db")) == "sqlite+aiosqlite:////abs/b.db"
    assert sqlalchemy_url(parse_url("postgres://u:p@h/db")) == "postgresql+asyncpg://"
    assert sqlite_path(parse_url("sqlite:///rel/x.db")) == "rel/x.db"
    assert sqlite_path(parse_url("sqlite:////abs/x.db")) == "/abs/x.db"
    assert sqlite_path(parse_url("sqlite+aiosqlite:///:memory:")) is None
    with pytest.raises(StateConfigError):
        sqlalchemy_url(parse_url("mysql://h/db"))
    with pytest.raises(StateConfigError, match="mode"):
        sqlite_path(parse_url("sqlite:///x.db?mode=ro"))
    backend, parsed = resolve("sqlite+pysqlite:///x.db")
    assert isinstance(backend.create(parsed, {}), SQLiteAdapter)


async def test_default_file_and_folder_are_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOTIA_STATE_URL", raising=False)
    state = StateManager.from_config()
    try:
        await state.set("s", "k", {"ok": True})
    finally:
        await state.close()
    db = tmp_path / ".motia" / "motia.state.db"
    assert db.is_file()
    assert _rows(db, "SELECT scope, key, value FROM motia_state") == [("s", "k", '{"ok":true}')]
    assert _rows(db, "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize("form", ["relative", "absolute", "aiosqlite"])
async def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    monkeypatch.chdir(tmp_path)
    url = {
        "relative": "sqlite:///data/rel.db",
        "absolute": f"sqlite:///{tmp_path / 'data' / 'rel.db'}",
        "aiosqlite": "sqlite+aiosqlite:///data/rel.db",
    }[form]
    assert url.startswith("sqlite:////") == (form == "absolute")
    state = StateManager.from_url(url)
    try:
        await state.set("s", "k", 1)
    finally:
        await state.close()
    assert _rows(tmp_path / "data" / "rel.db", "SELECT value FROM motia_state") == [("1",)]


async def test_memory_lives_as_long_as_the_adapter() -> None:
    a = StateManager.from_url("sqlite:///:memory:")
    b = StateManager.from_url("sqlite:///:memory:")
    try:
        await a.set("s", "k", [1])
        await asyncio.sleep(0)
        assert await a.get("s", "k") == [1]
        assert await b.get("s", "k") is None  # each adapter has its own database
    finally:
        await a.close()
        await b.close()


async def test_folder_that_cannot_be_created_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    state = StateManager.from_url(f"sqlite:///{blocker / 'sub' / 'x.db'}")
    with pytest.raises(StateBackendError) as info:
        await state.get("s", "k")
    assert "folder" in str(info.value) and info.value.backend == "sqlite"
    await state.close()


async def test_path_that_cannot_be_opened_says_what_to_do(tmp_path: Path) -> None:
    state = StateManager.from_url(f"sqlite:///{tmp_path}")  # a directory, not a file
    with pytest.raises(StateBackendError) as info:
        await state.get("s", "k")
    assert "writable" in str(info.value) or "folder" in str(info.value)
    await state.close()


async def test_closed_store_reconnects(sqlite_url: str) -> None:
    state = StateManager.from_url(sqlite_url)
    await state.set("s", "k", 1)
    await state.close()
    await state.close()
    assert await state.get("s", "k") == 1
    await state.close()


# --- stored format ---------------------------------------------------------------------------------------


async def test_stored_columns(tmp_path: Path) -> None:
    db = tmp_path / "fmt.db"
    state = StateManager.from_url(f"sqlite:///{db}")
    try:
        await state.set("s", "k", {"n": 1.0, "big": 2**70}, ttl=3600)
        first = _rows(db, "SELECT created_at, updated_at, expires_at FROM motia_state")[0]
        await asyncio.sleep(0.01)
        await state.set("s", "k", 5)
        await state.set("s", "top", 1.0)
        assert await state.get("s", "top") == 1.0 and type(await state.get("s", "top")) is float
    finally:
        await state.close()
    created, updated, expires = _rows(db, "SELECT created_at, updated_at, expires_at FROM motia_state WHERE key='k'")[0]
    assert created == first[0]  # kept on overwrite
    assert updated > first[1]
    assert expires is None and first[2] is not None
    # One fixed UTC text format that sorts like time and compares with SQLite's own clock.
    parsed = datetime.fromisoformat(first[2]).replace(tzinfo=UTC)
    assert 3590 < parsed.timestamp() - time.time() <= 3600
    assert _rows(db, "SELECT ? > datetime('now'), ? > strftime('%Y-%m-%d %H:%M:%f', 'now')", (first[2], first[2])) == [
        (1, 1)
    ]
    assert _rows(db, "SELECT value, typeof(value) FROM motia_state WHERE key = 'top'") == [("1.0", "text")]


async def test_expired_rows_are_filtered_in_sql_and_cleaned_in_batches(tmp_path: Path) -> None:
    db = tmp_path / "exp.db"
    state = StateManager.from_url(f"sqlite:///{db}")
    try:
        await state.set("keep", "k", 1)
        await state.set("keep", "later", 2, ttl=3600)
        # Expired rows written directly, as another process might have left them.
        n = CLEANUP_BATCH * 2 + 17
        conn = sqlite3.connect(db)
        with conn:
            conn.executemany(
                "INSERT INTO motia_state (scope, key, value, expires_at) "
                "VALUES (?, ?, '1', '2000-01-01 00:00:00.000000')",
                [(f"old{i % 3}", str(i)) for i in range(n)],
            )
        conn.close()
        assert await state.list_groups() == ["keep"]
        assert await state.items() == await state.items("keep")
        assert await state.cleanup() == n
        assert await state.cleanup() == 0
        assert sorted(await state.keys("keep")) == ["k", "later"]
    finally:
        await state.close()
    assert _rows(db, "SELECT count(*) FROM motia_state") == [(2,)]


# --- concurrency -----------------------------------------------------------------------------------------


def test_processes_sharing_one_file_lose_no_update(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    async def prepare() -> None:
        state = StateManager.from_url(url)
        await state.connect()
        await state.close()

    asyncio.run(prepare())
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_workers.increment_many, args=(url, 500, start)) for _ in range(8)]
    for p in procs:
        p.start()
    start.set()
    try:
        for p in procs:
            p.join(240)
        assert [p.exitcode for p in procs] == [0] * 8
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()

    async def total() -> Any:
        state = StateManager.from_url(url)
        try:
            return await state.get("mp", "counter")
        finally:
            await state.close()

    assert asyncio.run(total()) == {"n": 4000}


async def test_batched_operations_keep_their_own_results(sqlite_url: str) -> None:
    state = StateManager.from_url(sqlite_url)
    try:
        await state.set("s", "n", {"x": "text"})
        bad = [{"type": "increment", "path": "x", "by": 1}]  # x is a string: UpdateOpError, nothing written
        good = [{"type": "increment", "path": "n", "by": 1}]
        await state.set("s", "obj", {"n": 0})
        tasks = []
        for i in range(50):
            tasks.append(state.set("s", f"k{i}", i))
            tasks.append(state.update("s", "obj", good))
            tasks.append(state.update("s", "n", bad))
            tasks.append(state.get("s", f"k{i}"))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 50 and all(type(e).__name__ == "UpdateOpError" for e in errors)
        assert [r for r in results[3::4]] == list(range(50))  # each get saw the set queued before it
        assert await state.get("s", "obj") == {"n": 50}
        assert await state.get("s", "n") == {"x": "text"}
    finally:
        await state.close()


def _traced(state: StateManager) -> list[str]:
    """The statements the store's connection runs from now on (the trace callback of sqlite3)."""
    adapter = state.adapter
    assert isinstance(adapter, SQLiteAdapter) and adapter._db._conn is not None
    run: list[str] = []
    adapter._db._conn.set_trace_callback(run.append)  # called in the worker thread: list.append is safe
    return run


async def test_identical_lists_of_one_batch_run_one_statement_and_get_their_own_objects(sqlite_url: str) -> None:
    state = StateManager.from_url(sqlite_url)
    try:
        await state.set_many("s", {f"k{i}": {"i": i, "tags": [i]} for i in range(3)})
        await state.set("t", "only", [1])
        run = _traced(state)
        # The get goes to the worker alone; everything after it queues meanwhile and forms the next batch.
        first = state.get("t", "only")
        before = [state.list("s") for _ in range(16)]
        other = state.list("t")
        write = state.set("s", "k9", {"i": 9, "tags": [9]})
        after = [state.list("s") for _ in range(16)]
        results = await asyncio.gather(first, *before, other, write, *after)
        lists = [s for s in run if "group_concat" in s]
        assert len(lists) == 3  # "s" before the write, "t", "s" after it
        old = [{"i": i, "tags": [i]} for i in range(3)]
        got_before, got_after = results[1:17], results[19:]
        assert all(r == old for r in got_before) and results[17] == [[1]]
        assert all(r == [*old, {"i": 9, "tags": [9]}] for r in got_after)
        mine = got_before + got_after
        assert len({id(r) for r in mine}) == 32 and len({id(r[0]["tags"]) for r in mine}) == 32
    finally:
        await state.close()


async def test_sets_of_one_batch_read_the_old_values_once_and_keep_call_order(tmp_path: Path) -> None:
    path = tmp_path / "sets.db"
    state = StateManager.from_url(f"sqlite:///{path}")
    try:
        await state.set("s", "a", "a0")
        await state.set("t", "b", "b0")
        run = _traced(state)
        writes = [("s", "a"), ("t", "b"), ("s", "c"), ("s", "a"), ("s", "a"), ("t", "b"), ("s", "c")]
        first = state.get("s", "a")
        sets = [
            state.set(scope, key, f"{key}{i + 1}", ttl=60 if i == 2 else None) for i, (scope, key) in enumerate(writes)
        ]
        results = await asyncio.gather(first, *sets)
        # One look-up per scope for the whole batch, no read per set, and the writes in one transaction.
        assert len([s for s in run if "json_each" in s]) == 2
        assert len([s for s in run if s.startswith("SELECT value FROM")]) == 1  # the get's
        assert len([s for s in run if s.startswith("BEGIN")]) == 1
        olds = [r.old_value for r in results[1:]]
        assert olds == ["a0", "b0", None, "a1", "a4", "b2", "c3"]  # each the value its own write replaced
        assert await state.get_many("s", ["a", "c"]) == {"a": "a5", "c": "c7"}
        assert await state.ttl("s", "c") is None  # the later write of c had no ttl
    finally:
        await state.close()
    # Each set its own change, in call order.
    rows = _rows(path, f'SELECT scope, "key", old_value, new_value FROM {CHANGES_TABLE} ORDER BY revision')[2:]
    assert rows == [
        (sc, k, None if o is None else f'"{o}"', f'"{k}{i + 1}"')
        for i, ((sc, k), o) in enumerate(zip(writes, olds, strict=True))
    ]


# --- filters in SQL, cross-checked with ops.match ---------------------------------------------------------

_TRICKY: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 0.5, -0.0, 0.1 + 0.2, 1e-7, 1e-300, 1.7976931348623157e308, 1e16, 123456.789,
    2**53 + 1, 2**63 - 1, 2**63, -(2**63), 2**70,
    "", "a", "A", "ab", "abc", "b", "é", "😀", "z😀", "%", "_", "a%b", "a_b", "10", "9", "null", "true", "1", " a",
    'q"uote', "back\\slash", "[", "*",
    [], [1], [1.0], [1, "a"], ["a"], ["a%"], [None], [True], [[1]], [{"a": 1}],
    {}, {"a": 1}, {"a": None}, {"x": {"y": 1}},
]  # fmt: skip

_OPERANDS: list[Any] = [
    None, True, False, 0, 1, 1.0, -1, 0.5, 0.1 + 0.2, 1e-300, 2**63 - 1, 2**63, 2**70,
    "", "a", "A", "ab", "b", "é", "😀", "%", "_", "a%b", "1", "10", "9", "null", "*",
    [], [1], {"a": 1}, {},
]  # fmt: skip

_PATHS: list[tuple[str, ...]] = [("f",), ('a"b.[*]',), ("n", "a.b"), ("f", "a"), ("missing",)]


async def test_sql_filters_match_python_semantics(tmp_path: Path) -> None:
    adapter = SQLiteAdapter(f"sqlite:///{tmp_path / 'filters.db'}")
    await adapter.connect()
    try:
        records: dict[str, Any] = {}
        for i, v in enumerate(_TRICKY):
            records[f"r{i:03d}"] = {"f": v, 'a"b.[*]': v, "n": {"a.b": v}}
        records["x-scalar-n"] = {"f": 1, "n": "not an object"}
        records["x-list-n"] = {"n": [{"a.b": 1}]}
        records["x-empty"] = {}
        await adapter.set_many("s", records, None)
        roots = {f"t{i:03d}": v for i, v in enumerate(_TRICKY)}
        await adapter.set_many("root", roots, None)

        mismatches = []
        checked = 0
        for op, operand, path in itertools.product(FILTER_OPS, _OPERANDS, [*_PATHS, ()]):
            if op in ("isNull", "isNotNull") and operand is not None:
                continue
            f = Filter(path, op, operand)
            scope, data = ("root", roots) if path == () else ("s", records)
            want = [k for k in sorted(data) if match(data[k], [f])]
            got = [item.key for item in await adapter.items(scope, [f], None)]
            checked += 1
            if got != want:
                mismatches.append((op, operand, path, sorted(set(got) ^ set(want))))
        assert checked > 1000
        assert mismatches == []
    finally:
        await adapter.close()


def test_scalar_filters_run_in_sql_only() -> None:
    # Only container operands and integers beyond 64 bits need Python's re-check; everything else is SQL.
    for op in FILTER_OPS:
        for operand in [None, True, 1, 0.5, 2**63 - 1, "a%_"]:
            _, _, recheck = compile_filters([Filter(("a", "b"), op, operand)])
            assert recheck == [], (op, operand)
    sql, params, recheck = compile_filters([Filter(("x.y",), "contains", "50%")])
    assert "LIKE" not in sql.upper() and "instr(" in sql and "50%" in params and "x.y" in params
    assert compile_filters([Filter(("a",), "eq", {"k": 1})])[2] != []
    assert compile_filters([Filter(("a",), "gt", 2**64)])[2] != []


async def test_filters_with_limit_and_all_scopes(sqlite_url: str) -> None:
    state = StateManager.from_url(sqlite_url)
    try:
        for scope in ["b", "a", "a%", "a_"]:
            for key in ["2", "10", "é", "Z"]:
                await state.set(scope, key, {"status": "open" if key != "Z" else "closed", "tags": ["x", key]})
        items = await state.items(filters=[{"path": "status", "op": "eq", "value": "open"}], limit=5)
        assert [(i.scope, i.key) for i in items] == [("a", "10"), ("a", "2"), ("a", "é"), ("a%", "10"), ("a%", "2")]
        items = await state.items("a_", filters=[{"path": "tags", "op": "contains", "value": {"k": 1}}])
        assert items == []
        items = await state.items("a_", filters=[{"path": "tags", "op": "notContains", "value": {"k": 1}}], limit=2)
        assert [i.key for i in items] == ["10", "2"]
    finally:
        await state.close()


# --- plain SQL recipes of the README ----------------------------------------------------------------------

SQLITE_RECIPES = {
    "status": (
        "SELECT key, json_extract(value, '$.status') AS status FROM motia_state WHERE scope = 'orders' ORDER BY key"
    ),
    "live": (
        "SELECT scope, key, value FROM motia_state "
        "WHERE expires_at IS NULL OR expires_at > strftime('%Y-%m-%d %H:%M:%f', 'now') ORDER BY scope, key"
    ),
    "per_scope": (
        "SELECT scope, count(*) AS entries FROM motia_state "
        "WHERE expires_at IS NULL OR expires_at > strftime('%Y-%m-%d %H:%M:%f', 'now') GROUP BY scope ORDER BY scope"
    ),
}


async def _fill_for_recipes(state: StateManager) -> None:
    await state.set("orders", "o1", {"status": "paid", "total": 10})
    await state.set("orders", "o2", {"status": "open"})
    await state.set("orders", "o3", {"status": "gone"}, ttl=0.05)
    await state.set("users", "u1", {"name": "Ann"})
    await asyncio.sleep(0.1)


async def test_readme_sqlite_recipes(tmp_path: Path) -> None:
    db = tmp_path / "recipes.db"
    state = StateManager.from_url(f"sqlite:///{db}")
    try:
        await _fill_for_recipes(state)
    finally:
        await state.close()
    assert _rows(db, SQLITE_RECIPES["status"]) == [("o1", "paid"), ("o2", "open"), ("o3", "gone")]
    assert [r[:2] for r in _rows(db, SQLITE_RECIPES["live"])] == [("orders", "o1"), ("orders", "o2"), ("users", "u1")]
    assert _rows(db, SQLITE_RECIPES["per_scope"]) == [("orders", 2), ("users", 1)]


def test_one_store_across_event_loops(tmp_path: Path) -> None:
    # asyncio.run twice on one StateManager (scripts, CLIs): the worker thread is not tied to a loop.
    state = StateManager.from_url(f"sqlite:///{tmp_path / 'loops.db'}")
    asyncio.run(state.set("s", "k", 1))
    assert asyncio.run(state.get("s", "k")) == 1
    asyncio.run(state.close())


async def test_cleanup_inside_a_batch_of_writes(sqlite_url: str) -> None:
    state = StateManager.from_url(sqlite_url)
    try:
        await state.set("s", "gone", 1, ttl=0.01)
        await asyncio.sleep(0.05)
        results = await asyncio.gather(
            state.set("s", "a", 1), state.cleanup(), state.set("s", "a", 2), state.get("s", "a")
        )
        assert results[0].old_value is None and results[1] == 1
        assert results[2].old_value == 1 and results[3] == 2
    finally:
        await state.close()


async def test_write_lock_held_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    state = StateManager.from_url(f"sqlite:///{db}", busy_timeout=0.2)
    await state.set("s", "k", 0)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        results = await asyncio.gather(*(state.set("s", f"k{i}", i) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, StateBackendError) for r in results), results
        assert "busy_timeout" in str(results[0])
        assert await state.get("s", "k") == 0  # reads still work under WAL
        other.execute("ROLLBACK")
        await state.set("s", "k", 1)
        assert await state.get("s", "k") == 1
    finally:
        other.close()
        await state.close()
