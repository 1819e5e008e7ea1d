"""export / import / copy through the console script: exact values, remaining TTLs, both import formats."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from motia_state import StateItem, StateManager
from motia_state.backends.memory import MemoryAdapter
from motia_state.ops import Filter
from motia_state.transfer import copy_state, export_state
from tests.cli.conftest import SCRIPT, shape, url_of
from tests.conftest import FACTORIES, MARKS

VALUES: dict[str, Any] = {
    "big": 2**70,
    "negative_big": -(2**80),
    "float": 1e16,
    "tiny": 5e-324,
    "one": 1.0,
    "int": 1,
    "empty_obj": {},
    "empty_list": [],
    "nested": {"a": [{}, [], None, True, 0.5, "é🎉"], "b": {"c": {"d": []}}},
    "null": None,
    "text": 'line\nbreak "quoted" \\ back',
}


async def _seed(state: StateManager) -> None:
    await state.set_many("trace-1", VALUES)
    await state.set_many("trace-1", {"hold": {"seat": "A1"}, "hold2": [1]}, ttl=3600)
    await state.set("a:b", "c", "scope with a colon", ttl=7200)
    await state.set("a", "b:c", "key with a colon")
    await state.set("gone", "soon", 1, ttl=0.001)


async def _snapshot(state: StateManager) -> dict[tuple[str, str], tuple[Any, float | None]]:
    """Every live entry: its typed value and its remaining TTL."""
    out: dict[tuple[str, str], tuple[Any, float | None]] = {}
    for item in await state.items():
        out[(item.scope, item.key)] = (shape(item.value), await state.ttl(item.scope, item.key))
    return out


def _same(before: dict[Any, Any], after: dict[Any, Any]) -> None:
    assert after.keys() == before.keys()
    for where, (value, ttl) in before.items():
        new_value, new_ttl = after[where]
        assert new_value == value, where
        if ttl is None:
            assert new_ttl is None, where
        else:
            # the remaining TTL is kept: it cannot grow, and only the seconds the test took are gone
            assert new_ttl is not None and ttl - 120 < new_ttl <= ttl + 0.01, (where, ttl, new_ttl)


async def _empty(state: StateManager) -> None:
    for scope in await state.list_groups():
        await state.clear(scope)


async def test_export_import_round_trip_is_exact(store: tuple[str, StateManager], acli: Any, tmp_path: Path) -> None:
    url, state = store
    await _seed(state)
    await asyncio.sleep(0.01)  # let the millisecond entry expire: it must not be exported
    before = await _snapshot(state)
    assert len(before) == len(VALUES) + 4

    summary = (await acli("--url", url, "export", "-o", "dump.json")).ok().json()
    assert summary == {"output": "dump.json", "entries": len(before), "scopes": 3, "skipped_expired": 0}
    dump = json.loads((tmp_path / "dump.json").read_text(encoding="utf-8"))
    assert dump["format"] == "motia-state-export" and dump["version"] == 1
    assert datetime.fromisoformat(dump["exported_at"]).tzinfo is not None
    by_key = {(e["scope"], e["key"]): e for e in dump["entries"]}
    assert by_key[("trace-1", "big")]["value"] == 2**70 and by_key[("trace-1", "big")]["expires_at"] is None
    assert type(by_key[("trace-1", "float")]["value"]) is float
    assert datetime.fromisoformat(by_key[("a:b", "c")]["expires_at"]) > datetime.now(UTC) + timedelta(hours=1)
    assert not (tmp_path / "dump.json.partial").exists()

    scoped = (await acli("--url", url, "export", "--scope", "a:b")).ok()
    assert [(e["scope"], e["key"]) for e in json.loads(scoped.out)["entries"]] == [("a:b", "c")]
    assert scoped.err == ""

    await _empty(state)
    first = (await acli("--url", url, "import", "dump.json")).ok().json()
    assert first == {"format": "motia-state-export", "entries": len(before), "scopes": 3, "skipped_expired": 0}
    after = await _snapshot(state)
    _same(before, after)

    # idempotent: importing again changes nothing
    (await acli("--url", url, "import", "dump.json")).ok()
    _same(after, await _snapshot(state))


async def test_import_formats_expiry_and_atomic_refusal(
    store: tuple[str, StateManager], acli: Any, tmp_path: Path
) -> None:
    url, state = store
    now = datetime.now(UTC)
    entries = [
        {"scope": "s", "key": "live", "value": {"n": 1}, "expires_at": (now + timedelta(hours=2)).isoformat()},
        {"scope": "s", "key": "dead", "value": 1, "expires_at": (now - timedelta(seconds=5)).isoformat()},
        {"scope": "s", "key": "forever", "value": [], "expires_at": None},
    ]
    doc = {"format": "motia-state-export", "version": 1, "exported_at": now.isoformat(), "entries": entries}
    (tmp_path / "export.json").write_text(json.dumps(doc))
    # The old File adapter's file: "scope:key" -> JSON.stringify(value), split at the first ':'
    old = {
        "trace-9:booking": json.dumps({"customer": {"name": "Ada"}, "seats": 2}),
        "trace-9:payment.status": '"pending"',
        "a:b:c": "12345678901234567890123",
        "trace-9:ratio": "1.5",
        "trace-9:nothing": "null",
    }
    motia_dir = tmp_path / ".motia"
    motia_dir.mkdir()
    (motia_dir / "motia.state.json").write_text(json.dumps(old, indent=2))
    bad = [*entries[:1], {"scope": "s", "key": "bad", "value": {"x": 1}, "expires_at": "yesterday"}]
    (tmp_path / "bad.json").write_text(json.dumps({**doc, "entries": bad}))
    (tmp_path / "neither.json").write_text('{"hello": "world"}')

    u = ("--url", url)
    summary = (await acli(*u, "import", "export.json")).ok().json()
    assert summary == {"format": "motia-state-export", "entries": 2, "scopes": 1, "skipped_expired": 1}
    assert await state.get_many("s", ["live", "dead", "forever"]) == {"live": {"n": 1}, "forever": []}
    left = await state.ttl("s", "live")
    assert left is not None and 7000 < left <= 7200
    assert await state.ttl("s", "forever") is None

    summary = (await acli(*u, "import", ".motia/motia.state.json")).ok().json()
    assert summary == {"format": "file-adapter", "entries": 5, "scopes": 2, "skipped_expired": 0}
    assert await state.get("trace-9", "booking") == {"customer": {"name": "Ada"}, "seats": 2}
    assert await state.get("trace-9", "payment.status") == "pending"
    assert shape(await state.get("a", "b:c")) == shape(12345678901234567890123)
    assert shape(await state.get("trace-9", "ratio")) == shape(1.5)
    assert await state.get_many("trace-9", ["nothing"]) == {"nothing": None}

    # a bad file writes nothing at all, and says what is wrong in one line
    await _empty(state)
    assert "entries[1]" in (await acli(*u, "import", "bad.json")).failed_cleanly(2)
    assert "neither a motia-state export" in (await acli(*u, "import", "neither.json")).failed_cleanly(2)
    assert "cannot read the file" in (await acli(*u, "import", "missing.json")).failed_cleanly(2)
    assert await state.list_groups() == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[1, 2]", "neither a motia-state export"),
        ('{"format": "motia-state-export", "version": 2, "entries": []}', "version 2 is not supported"),
        ('{"format": "motia-state-export", "version": 1, "entries": [{"scope": "s", "key": "k"}]}', "entries[0]"),
        ('{"s:k": "NaN"}', "NaN is not valid JSON"),
        ('{"s:k": "{not json"}', "not valid JSON"),
        ('{"s:": "1"}', "key must be a non-empty str"),
        ("{oops", "not valid JSON"),
    ],
)
def test_import_refuses_bad_files(cli: Any, tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "in.json").write_text(text)
    assert needle in cli("--url", "memory://", "import", "in.json").failed_cleanly(2)


def test_import_from_stdin_and_empty_file_adapter(cli: Any) -> None:
    run = cli("--url", "memory://", "import", "-", input="{}")
    assert run.ok().json() == {"format": "file-adapter", "entries": 0, "scopes": 0, "skipped_expired": 0}


COPIES = [
    pytest.param("sqlite", "postgres", marks=MARKS["postgres"]),
    pytest.param("sqlite", "redis", marks=MARKS["redis"]),
    pytest.param("redis", "sqlite", marks=MARKS["redis"]),
]


@pytest.mark.parametrize(("source", "dest"), COPIES)
async def test_copy_between_backends(source: str, dest: str, acli: Any, tmp_path: Path) -> None:
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    src = await FACTORIES[source](src_dir)
    dst = await FACTORIES[dest](dst_dir)
    try:
        await _seed(src)
        big = {f"k{i:05d}": {"i": i, "f": i / 7} for i in range(1234)}
        await src.set_many("big-scope", big)
        for n in range(25):
            await src.set_many(f"trace-{n:02d}", {"a": n, "b": [n]}, ttl=3600 if n % 2 else None)
        await asyncio.sleep(0.01)
        before = await _snapshot(src)
        await dst.set("big-scope", "only-in-dest", "kept")

        src_url, dst_url = url_of(source, src_dir), url_of(dest, dst_dir)
        run = (await acli("copy", "--from", src_url, "--to", dst_url, "--batch-size", "500")).ok()
        assert run.err == ""  # piped: no progress bar
        summary = run.json()
        assert summary["entries"] == len(before) and summary["scopes"] == 3 + 1 + 25
        assert summary["skipped_expired"] == 0

        after = await _snapshot(dst)
        assert after.pop(("big-scope", "only-in-dest"))[0] == ("str", "kept")
        _same(before, after)
        _same(before, await _snapshot(src))  # the source is unchanged
    finally:
        await src.close()
        await dst.close()


def test_copy_refuses_the_same_store(cli: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert "the same store" in cli("copy", "--from", url, "--to", url).failed_cleanly(2)
    assert "--to" in cli("copy", "--from", "memory://", "--to", "ftp://x").failed_cleanly(2)


async def test_copy_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    src = await FACTORIES["sqlite"](tmp_path)
    try:
        await src.set_many("one", {"a": 1, "b": 2})
        await src.set("two", "c", 3)
    finally:
        await src.close()
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTIA_STATE_")}
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [SCRIPT, "copy", "--from", url_of("sqlite", tmp_path), "--to", f"sqlite:///{tmp_path / 'copy.db'}"],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the terminal is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert done.returncode == 0
    assert json.loads(done.stdout)["entries"] == 3
    assert b"copying scopes" in shown and b"3 entries" in shown


@pytest.mark.parametrize(
    "source", ["sqlite", pytest.param("postgres", marks=MARKS["postgres"]), pytest.param("redis", marks=MARKS["redis"])]
)
async def test_copy_in_small_batches_copies_everything(source: str, acli: Any, tmp_path: Path) -> None:
    """--batch-size 7 pages each scope: sizes around multiples of the batch, special keys, TTLs."""
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    src = await FACTORIES[source](src_dir)
    dst = await FACTORIES["sqlite"](dst_dir)
    try:
        await src.set_many("fifty", {f"k{i}": {"i": i, "big": 2**70 + i} for i in range(50)})
        await src.set_many("seven", {f"s{i}": i for i in range(7)}, ttl=3600)  # exactly one batch
        await src.set_many("fourteen", {f"f{i:02d}": [i] for i in range(14)})  # exactly two batches
        await src.set_many("odd:keys", {k: k for k in ["%", "_", "a:b", "😀", "é", "a b", "\\"]})
        await src.set("one", "only", 1.0)
        await src.set_many("fifty", {"k25x": "expired"}, ttl=0.001)
        await asyncio.sleep(0.05)
        before = await _snapshot(src)
        assert len(before) == 50 + 7 + 14 + 7 + 1

        run = (
            await acli(
                "copy", "--from", url_of(source, src_dir), "--to", url_of("sqlite", dst_dir), "--batch-size", "7"
            )
        ).ok()
        assert run.json()["entries"] == len(before)
        assert run.json()["scopes"] == 5
        after = await _snapshot(dst)
        _same(before, after)
        assert await dst.keys("fifty") == sorted(f"k{i}" for i in range(50))
    finally:
        await src.close()
        await dst.close()


class _PageSpy(MemoryAdapter):
    """Memory store that records how many entries each items() call returned."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        found = await super().items(scope, filters, limit, after=after)
        self.sizes.append(len(found))
        return found


async def test_copy_and_export_hold_one_batch_at_a_time() -> None:
    spy = _PageSpy()
    source = StateManager(spy)
    await source.set_many("big", {f"k{i:03d}": {"i": i} for i in range(50)})
    await source.set_many("small", {"a": 1, "b": [2]}, ttl=3600)
    dest = StateManager.from_url("memory://")

    stats = await copy_state(source, dest, batch_size=7)
    assert (stats.entries, stats.scopes) == (52, 2)
    assert max(spy.sizes) == 7 and sum(spy.sizes) == 52
    assert [(i.scope, i.key, i.value) for i in await dest.items()] == [
        (i.scope, i.key, i.value) for i in await source.items()
    ]

    spy.sizes.clear()
    paged, whole = io.StringIO(), io.StringIO()
    assert (await export_state(source, paged, batch_size=3)).entries == 52
    assert max(spy.sizes) == 3
    await export_state(source, whole)
    # The same document whatever the batch size (exported_at aside).
    first, second = json.loads(paged.getvalue()), json.loads(whole.getvalue())
    del first["exported_at"], second["exported_at"]
    assert first == second and len(first["entries"]) == 52


@pytest.mark.parametrize(
    "dest", ["sqlite", pytest.param("postgres", marks=MARKS["postgres"]), pytest.param("redis", marks=MARKS["redis"])]
)
async def test_copy_and_import_record_created_changes_in_the_destination(dest: str, acli: Any, tmp_path: Path) -> None:
    """SPEC §10: entries written by copy (and import) are changes of the destination like any write."""
    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    src = await FACTORIES["sqlite"](src_dir)
    dst = await FACTORIES[dest](dst_dir)
    try:
        await src.set_many("trace-1", {"a": 1, "b": {"x": [2]}})
        await src.set("trace-2", "c", 3)
        await dst.set("trace-1", "a", "older")
        start = await dst.revision()
        (await acli("copy", "--from", url_of("sqlite", src_dir), "--to", url_of(dest, dst_dir))).ok()
        async with dst.watch(since=start) as changes:
            got = [await asyncio.wait_for(anext(changes), 10) for _ in range(3)]
        assert sorted((c.event, c.scope, c.key, c.old_value, c.new_value) for c in got) == [
            ("created", "trace-1", "b", None, {"x": [2]}),
            ("created", "trace-2", "c", None, 3),
            ("updated", "trace-1", "a", "older", 1),
        ]
        export = tmp_path / "dump.json"
        export.write_text(json.dumps({"trace-3:k": json.dumps("v")}))  # the File adapter's format
        start = await dst.revision()
        (await acli("--url", url_of(dest, dst_dir), "import", str(export))).ok()
        async with dst.watch(since=start) as changes:
            change = await asyncio.wait_for(anext(changes), 10)
        assert (change.event, change.scope, change.key, change.new_value) == ("created", "trace-3", "k", "v")
    finally:
        await src.close()
        await dst.close()
