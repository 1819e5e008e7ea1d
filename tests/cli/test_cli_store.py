"""Every one-entry command against SQLite, Postgres and Redis, checked through the Python API too."""

from __future__ import annotations

from typing import Any

from motia_state import StateManager
from tests.cli.conftest import shape, url_of
from tests.conftest import FACTORIES

ODD_SCOPE = "a:b*[x]%_{y}\\ é 🎉"
VALUE = {"big": 2**70, "float": 1e16, "one": 1.0, "int": 1, "empty_obj": {}, "empty_list": [], "text": 'é\n"q"'}
VALUE_JSON = (
    '{"big": 1180591620717411303424, "float": 1e16, "one": 1.0, "int": 1, "empty_obj": {}, "empty_list": [],'
    ' "text": "é\\n\\"q\\""}'
)


async def test_commands_on_a_persistent_store(store: tuple[str, StateManager], acli: Any) -> None:
    url, state = store
    u = ("--url", url)

    # set prints old and new values; the value lands exactly as typed (types included)
    first = (await acli(*u, "set", ODD_SCOPE, "booking", VALUE_JSON)).ok().json()
    assert shape(first) == shape({"old_value": None, "new_value": VALUE})
    assert shape(await state.get(ODD_SCOPE, "booking")) == shape(VALUE)
    second = (await acli(*u, "set", ODD_SCOPE, "booking", "-5", "--ttl", "3600")).ok().json()
    assert shape(second["old_value"]) == shape(VALUE) and second["new_value"] == -5
    left = await state.ttl(ODD_SCOPE, "booking")
    assert left is not None and 3000 < left <= 3600

    await state.set("trace-2", "payment.status", "pending")
    await state.set("trace-2", "nothing", None)
    await state.set("gone", "k", 1, ttl=0.001)

    # get: exact JSON; a stored null is null with exit 0; a missing entry is exit 1 with nothing on stdout
    assert (await acli(*u, "get", ODD_SCOPE, "booking")).ok().json() == -5
    assert (await acli(*u, "get", "trace-2", "payment.status")).ok().out == '"pending"\n'
    assert (await acli(*u, "get", "trace-2", "nothing")).ok().out == "null\n"
    missing = await acli(*u, "get", "trace-2", "nope")
    assert missing.out == "" and "no entry for scope 'trace-2' key 'nope'" in missing.failed_cleanly()

    # list and groups see live entries only, sorted by code point
    everything = (await acli(*u, "list")).ok().json()
    assert everything == {ODD_SCOPE: {"booking": -5}, "trace-2": {"nothing": None, "payment.status": "pending"}}
    assert list(everything) == sorted(everything)
    assert (await acli(*u, "list", "trace-2")).ok().json() == {
        "trace-2": {"nothing": None, "payment.status": "pending"}
    }
    assert (await acli(*u, "list", "empty")).ok().json() == {"empty": {}}
    assert (await acli(*u, "groups")).ok().out.splitlines() == sorted([ODD_SCOPE, "trace-2"])

    # delete prints the old value; clear and cleanup print counts
    assert (await acli(*u, "delete", "trace-2", "payment.status")).ok().json() == "pending"
    assert (await acli(*u, "delete", "trace-2", "payment.status")).ok().json() is None
    assert await state.get("trace-2", "payment.status") is None
    assert (await acli(*u, "clear", ODD_SCOPE)).ok().out == "1\n"
    assert (await acli(*u, "clear", ODD_SCOPE)).ok().out == "0\n"
    assert await state.keys(ODD_SCOPE) == []
    cleaned = int((await acli(*u, "cleanup")).ok().out)
    assert cleaned in (0, 1)  # Redis expires entries by itself; SQL removes the expired row here
    assert await state.list_groups() == ["trace-2"]


async def test_store_from_config_yml_and_environment(acli: Any, tmp_path: Any) -> None:
    # The resolution code path is the same for every backend: SQLite stands for all.
    state = await FACTORIES["sqlite"](tmp_path)
    url = url_of("sqlite", tmp_path)
    await state.set("s", "k", {"from": "store"})
    (tmp_path / "config.yml").write_text(f"state:\n  url: {url}\n  ttl: 60\n")
    assert (await acli("get", "s", "k")).ok().json() == {"from": "store"}
    # the config's default ttl applies to a set without --ttl
    (await acli("set", "s", "t", "true")).ok()
    left = await state.ttl("s", "t")
    assert left is not None and 0 < left <= 60
    # import restores entries exactly: one that never expired does not get the default ttl
    (tmp_path / "old.json").write_text('{"t:k": "1"}')
    (await acli("import", "old.json")).ok()
    assert await state.get("t", "k") == 1 and await state.ttl("t", "k") is None
    (tmp_path / "config.yml").unlink()
    assert (await acli("groups", env={"MOTIA_STATE_URL": url})).ok().out == "s\nt\n"
    await state.close()
