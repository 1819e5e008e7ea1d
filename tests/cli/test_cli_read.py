"""The reading commands (keys, ttl, items) and update, with --jsonl/--compact, against every backend; exit codes."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from motia_state import StateManager

BOOKING = {"status": "confirmed", "seats": 2, "venue": {"city": "Paris", "name": "Olympia"}, "note": None}
OTHER = {"status": "pending", "seats": 5, "venue": {"city": "Lyon", "name": "Halle"}, "note": "vip"}


def _spare_port() -> int:
    # A port nothing listens on: bind, read the number, close.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _when(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.tzinfo is not None, text
    return parsed


# --- keys ----------------------------------------------------------------------------------------


async def test_keys_sorted_in_three_shapes(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    for key in ("zeta", "Alpha", "é", "b.c", "alpha"):
        await state.set("s", key, 1)
    await state.set("other", "x", 1)
    expected = sorted(["zeta", "Alpha", "é", "b.c", "alpha"])
    assert expected == ["Alpha", "alpha", "b.c", "zeta", "é"]  # code point order

    indented = (await acli(*u, "keys", "s")).ok()
    assert indented.json() == expected
    assert indented.out == json.dumps(expected, ensure_ascii=False, indent=2) + "\n"
    jsonl = (await acli(*u, "keys", "s", "--jsonl")).ok()
    assert jsonl.out.splitlines() == [json.dumps(k, ensure_ascii=False) for k in expected]
    assert [json.loads(line) for line in jsonl.out.splitlines()] == expected
    compact = (await acli(*u, "keys", "s", "--compact")).ok()
    assert compact.out == '["Alpha","alpha","b.c","zeta","é"]\n'

    # an empty scope: [] (and nothing at all with --jsonl)
    assert (await acli(*u, "keys", "nothing-here")).ok().json() == []
    assert (await acli(*u, "keys", "nothing-here", "--jsonl")).ok().out == ""


# --- ttl -----------------------------------------------------------------------------------------


async def test_ttl_seconds_left_null_and_missing(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    await state.set("s", "hold", {"a": 1}, ttl=600)
    await state.set("s", "forever", "x")

    left = (await acli(*u, "ttl", "s", "hold")).ok().json()
    assert isinstance(left, int | float) and 550 < left <= 600
    assert (await acli(*u, "ttl", "s", "forever")).ok().out == "null\n"
    compact = (await acli(*u, "ttl", "s", "hold", "--compact")).ok()
    assert compact.out.count("\n") == 1 and 550 < float(compact.out) <= 600
    jsonl = (await acli(*u, "ttl", "s", "forever", "--jsonl")).ok()
    assert jsonl.out == "null\n"

    missing = await acli(*u, "ttl", "s", "nope")
    assert missing.out == ""
    assert "no entry for scope 's' key 'nope'" in missing.failed_cleanly(1)


async def test_ttl_set_by_the_cli(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    (await acli(*u, "set", "s", "k", '"v"', "--ttl", "120")).ok()
    left = (await acli(*u, "ttl", "s", "k")).ok().json()
    assert 100 < left <= 120
    api = await state.ttl("s", "k")
    assert api is not None and abs(api - left) < 15


# --- update --------------------------------------------------------------------------------------


async def test_update_prints_old_and_new_and_keeps_the_ttl(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    await state.set("s", "booking", {"seats": 2, "venue": {"city": "Paris"}}, ttl=900)

    ops = [
        {"type": "increment", "path": "seats", "by": 3},
        {"type": "set", "path": ["venue", "city"], "value": "Lyon"},
        {"type": "set", "path": "status", "value": "confirmed"},
    ]
    done = (await acli(*u, "update", "s", "booking", json.dumps(ops))).ok().json()
    assert done == {
        "old_value": {"seats": 2, "venue": {"city": "Paris"}},
        "new_value": {"seats": 5, "venue": {"city": "Lyon"}, "status": "confirmed"},
    }
    assert await state.get("s", "booking") == {"seats": 5, "venue": {"city": "Lyon"}, "status": "confirmed"}
    left = await state.ttl("s", "booking")
    assert left is not None and 800 < left <= 900  # kept, not reset and not dropped

    # - reads the operations from stdin
    from_stdin = await acli(*u, "update", "s", "booking", "-", input='[{"type": "decrement", "path": "seats"}]')
    assert from_stdin.ok().json()["new_value"]["seats"] == 4
    assert (await state.get("s", "booking"))["seats"] == 4

    # a missing entry: old null, the ops applied to nothing
    fresh = (await acli(*u, "update", "s", "new", '[{"type": "set", "path": "a", "value": 1}]')).ok().json()
    assert fresh == {"old_value": None, "new_value": {"a": 1}}
    assert await state.ttl("s", "new") is None


async def test_update_bad_input_changes_nothing(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    await state.set("s", "booking", {"seats": 2, "name": "x"})

    bad_json = await acli(*u, "update", "s", "booking", "[{")
    assert bad_json.out == ""
    assert "is not valid JSON" in bad_json.failed_cleanly(2)

    bad_op = await acli(*u, "update", "s", "booking", '[{"type": "bogus", "path": "seats"}]')
    assert bad_op.out == ""
    assert "op 0 has unknown type 'bogus'" in bad_op.failed_cleanly(2)

    # the second op fails (incrementing a string): all or nothing, the first is not applied
    ops = '[{"type": "increment", "path": "seats"}, {"type": "increment", "path": "name"}]'
    partial = await acli(*u, "update", "s", "booking", ops)
    assert partial.out == ""
    line = partial.failed_cleanly(2)
    assert "op 1" in line
    assert await state.get("s", "booking") == {"seats": 2, "name": "x"}

    bad_stdin = await acli(*u, "update", "s", "booking", "-", input="not json")
    assert "the JSON value from stdin is not valid JSON" in bad_stdin.failed_cleanly(2)


# --- items ---------------------------------------------------------------------------------------


async def _seed_items(state: StateManager) -> None:
    await state.set("orders", "b1", BOOKING, ttl=3600)
    await state.set("orders", "b2", OTHER)
    await state.set("orders", "b3", {"status": "confirmed", "seats": 9, "venue": {"city": "Paris"}, "note": "x"})
    await state.set("archive", "old", {"status": "confirmed", "seats": 1, "venue": {"city": "Rome"}})
    await state.set("archive", "n", 7)


async def test_items_lists_entries_with_expiry(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    await _seed_items(state)
    before = datetime.now(UTC)

    rows = (await acli(*u, "items", "orders")).ok().json()
    assert [(r["scope"], r["key"]) for r in rows] == [("orders", "b1"), ("orders", "b2"), ("orders", "b3")]
    assert all(set(r) == {"scope", "key", "value", "expires_at"} for r in rows)
    assert rows[0]["value"] == BOOKING and rows[1]["value"] == OTHER
    expiry = _when(rows[0]["expires_at"])
    assert before + timedelta(seconds=3000) < expiry <= before + timedelta(seconds=3601)
    assert rows[1]["expires_at"] is None and rows[2]["expires_at"] is None

    # no scope: every scope, ordered by scope then key
    everything = (await acli(*u, "items")).ok().json()
    assert [(r["scope"], r["key"]) for r in everything] == [
        ("archive", "n"),
        ("archive", "old"),
        ("orders", "b1"),
        ("orders", "b2"),
        ("orders", "b3"),
    ]
    assert everything[0]["value"] == 7

    # --jsonl: one compact object per line; --compact: the list on one line
    jsonl = (await acli(*u, "items", "orders", "--jsonl")).ok()
    lines = jsonl.out.splitlines()
    assert len(lines) == 3 and [json.loads(line) for line in lines] == rows
    assert all(": " not in line.split('"expires_at"')[0] for line in lines)  # compact separators
    compact = (await acli(*u, "items", "orders", "--compact")).ok()
    assert compact.out.count("\n") == 1 and json.loads(compact.out) == rows

    # --limit
    limited = (await acli(*u, "items", "--limit", "2")).ok().json()
    assert [(r["scope"], r["key"]) for r in limited] == [("archive", "n"), ("archive", "old")]
    assert (await acli(*u, "items", "--limit", "0")).ok().json() == []
    assert (await acli(*u, "items", "empty-scope")).ok().json() == []


async def test_items_filters(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    await _seed_items(state)

    async def keys(*args: str) -> list[tuple[str, str]]:
        return [(r["scope"], r["key"]) for r in (await acli(*u, "items", *args)).ok().json()]

    # a bare word is a string
    assert await keys("orders", "--filter", "status eq confirmed") == [("orders", "b1"), ("orders", "b3")]
    # JSON value
    assert await keys("orders", "--filter", 'status eq "pending"') == [("orders", "b2")]
    # several filters are ANDed
    assert await keys("orders", "--filter", "status eq confirmed", "--filter", "seats gte 5") == [("orders", "b3")]
    # a nested path as a JSON list
    assert await keys("--filter", '["venue","city"] eq "Paris"') == [("orders", "b1"), ("orders", "b3")]
    assert await keys("--filter", '["venue", "city"] startsWith Pa', "--filter", "seats lt 5") == [("orders", "b1")]
    # isNull without a value: a null field (and, per the filter rules, a missing one)
    null_note = await keys("orders", "--filter", "note isNull")
    assert ("orders", "b1") in null_note and ("orders", "b2") not in null_note and ("orders", "b3") not in null_note
    assert await keys("orders", "--filter", "note isNotNull") == [("orders", "b2"), ("orders", "b3")]
    # filters with --limit
    assert await keys("--filter", "status eq confirmed", "--limit", "2") == [("archive", "old"), ("orders", "b1")]
    # --jsonl with a filter
    jsonl = (await acli(*u, "items", "orders", "--filter", "seats gt 4", "--jsonl")).ok()
    assert [json.loads(line)["key"] for line in jsonl.out.splitlines()] == ["b2", "b3"]


# --- list, get, groups output shapes ------------------------------------------------------------


async def test_list_get_groups_jsonl_and_compact(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)
    await state.set("a", "k1", {"x": [1, 2]})
    await state.set("a", "k2", "é")
    await state.set("b", "k", None)

    listed = (await acli(*u, "list", "--jsonl")).ok()
    assert [json.loads(line) for line in listed.out.splitlines()] == [
        {"scope": "a", "key": "k1", "value": {"x": [1, 2]}},
        {"scope": "a", "key": "k2", "value": "é"},
        {"scope": "b", "key": "k", "value": None},
    ]
    assert listed.out.splitlines()[1] == '{"scope":"a","key":"k2","value":"é"}'
    compact = (await acli(*u, "list", "--compact")).ok()
    assert compact.out == '{"a":{"k1":{"x":[1,2]},"k2":"é"},"b":{"k":null}}\n'
    assert (await acli(*u, "list", "a", "--compact")).ok().out == '{"a":{"k1":{"x":[1,2]},"k2":"é"}}\n'
    assert (await acli(*u, "list", "empty", "--compact")).ok().out == '{"empty":{}}\n'
    assert (await acli(*u, "list", "empty", "--jsonl")).ok().out == ""
    indented = (await acli(*u, "list")).ok()
    assert indented.json() == {"a": {"k1": {"x": [1, 2]}, "k2": "é"}, "b": {"k": None}}
    assert "\n" in indented.out.strip()

    assert (await acli(*u, "get", "a", "k1", "--compact")).ok().out == '{"x":[1,2]}\n'
    assert (await acli(*u, "get", "a", "k1", "--jsonl")).ok().out == '{"x":[1,2]}\n'
    assert (await acli(*u, "get", "a", "k1")).ok().out == json.dumps({"x": [1, 2]}, indent=2) + "\n"
    assert (await acli(*u, "get", "b", "k", "--compact")).ok().out == "null\n"
    gone = await acli(*u, "get", "b", "nope", "--compact")
    assert gone.out == "" and "no entry for scope 'b' key 'nope'" in gone.failed_cleanly(1)

    assert (await acli(*u, "groups")).ok().out == "a\nb\n"
    assert (await acli(*u, "groups", "--jsonl")).ok().out == '"a"\n"b"\n'
    assert (await acli(*u, "groups", "--compact")).ok().out == '["a","b"]\n'


async def test_groups_jsonl_keeps_a_scope_with_a_newline(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    await state.set("two\nlines", "k", 1)
    run = (await acli("--url", url, "groups", "--jsonl")).ok()
    assert [json.loads(line) for line in run.out.splitlines()] == ["two\nlines"]


# --- memory:// (one process per call): results that need no prior state, and usage errors --------


def test_memory_reads_of_an_empty_store(cli: Any) -> None:
    u = ("--url", "memory://")
    assert cli(*u, "keys", "s").ok().json() == []
    assert cli(*u, "keys", "s", "--compact").ok().out == "[]\n"
    assert cli(*u, "items").ok().json() == []
    assert cli(*u, "items", "--jsonl").ok().out == ""
    assert cli(*u, "list").ok().out == "{}\n"
    assert cli(*u, "list", "--compact").ok().out == "{}\n"
    assert cli(*u, "groups", "--compact").ok().out == "[]\n"
    assert cli(*u, "groups").ok().out == ""
    missing = cli(*u, "ttl", "s", "k")
    assert missing.out == "" and "no entry for scope 's' key 'k'" in missing.failed_cleanly(1)
    got = cli(*u, "get", "s", "k")
    assert got.out == "" and "no entry for scope 's' key 'k'" in got.failed_cleanly(1)
    done = cli(*u, "update", "s", "k", '[{"type": "append", "path": "tags", "value": "a"}]').ok().json()
    assert done == {"old_value": None, "new_value": {"tags": ["a"]}}


@pytest.mark.parametrize(
    ("filter_text", "message"),
    [
        ("n frob 1", "unknown op 'frob'"),
        ("garbage", "write it as 'PATH OP VALUE'"),
        ('["a", eq 1', "the path is not valid JSON"),
        ('["a", 1 eq 1', "the path"),
        ("status eq {bad", "the value"),
        ("status eq", "needs a value"),
    ],
)
def test_a_bad_filter_exits_2(cli: Any, filter_text: str, message: str) -> None:
    run = cli("--url", "memory://", "items", "--filter", filter_text)
    assert run.out == ""
    assert message in run.failed_cleanly(2)


def test_usage_errors_exit_2(cli: Any) -> None:
    u = ("--url", "memory://")
    not_json = cli(*u, "set", "s", "k", "pending")
    assert not_json.out == ""
    assert "is not valid JSON" in not_json.failed_cleanly(2) and "needs quotes" in not_json.err
    nan = cli(*u, "set", "s", "k", "NaN")
    assert "NaN is not valid JSON" in nan.failed_cleanly(2)
    empty_scope = cli(*u, "get", "", "k")
    assert "scope must be a non-empty str" in empty_scope.failed_cleanly(2)
    empty_key = cli(*u, "ttl", "s", "")
    assert "key must be a non-empty str" in empty_key.failed_cleanly(2)
    nul = cli(*u, "keys", "a\x01b")  # a control character is fine, not an error
    assert nul.ok().json() == []
    negative = cli(*u, "items", "--limit", "-1")
    assert negative.code == 2 and "--limit" in negative.err and negative.out == ""
    missing_arg = cli(*u, "ttl", "s")
    assert missing_arg.code == 2 and "Missing argument 'KEY'" in missing_arg.err
    ops_not_list = cli(*u, "update", "s", "k", '{"type": "set"}')
    assert ops_not_list.code == 2 and ops_not_list.out == "" and "motia-state: error: " in ops_not_list.err


@pytest.mark.parametrize("scheme", ["postgresql://postgres@127.0.0.1:{port}/db", "redis://127.0.0.1:{port}/0"])
@pytest.mark.parametrize(
    "command",
    [("keys", "s"), ("ttl", "s", "k"), ("items",), ("get", "s", "k"), ("list",), ("update", "s", "k", "[]")],
)
def test_an_unreachable_backend_exits_3(cli: Any, scheme: str, command: tuple[str, ...]) -> None:
    port = _spare_port()
    url = scheme.format(port=port)
    run = cli("--url", url, *command)
    assert run.out == ""
    line = run.failed_cleanly(3)
    assert f"127.0.0.1:{port}" in line
    assert ("postgres backend" if url.startswith("postgresql") else "redis backend") in line
