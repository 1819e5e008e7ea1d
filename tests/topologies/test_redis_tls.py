"""SPEC §12: Redis with TLS and ACL users (``rediss://user:pw@…?ssl_ca_certs=…``).

The server (``.ci/services/redis_tls.sh``) speaks TLS only, with a test CA, accepts an optional client
certificate signed by that CA, and has the ACL users ``default`` (admin), ``motia`` (keys ``motia:state:*``,
``+@all -@dangerous``), ``motia-minimal`` (only the commands docs/topologies.md lists) and
``motia-limited`` (like ``motia`` without EVAL/EVALSHA).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from motia_state import Change, StateBackendError, StateConfigError, StateManager
from motia_state.backends.redis.connection import _tls_parameters_taken
from tests.topologies.redis import TLS_DIR, TLS_PORT, TLS_URL, eventually, make_redis_tls, require_tls, tls_url

pytestmark = pytest.mark.redis

WITHIN = 20.0  # seconds: a bound for a hung call, not a measurement


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateManager]:
    store = await make_redis_tls(tmp_path)
    try:
        yield store
    finally:
        await store.close()


async def backend_error(
    url: str, secret: str | None = None, *, read_too: bool = True, **options: object
) -> StateBackendError:
    """The StateBackendError that a write (then, with ``read_too``, a read) through ``url`` raises."""
    require_tls()
    store = StateManager.from_url(url, connect_timeout=3, **options)
    try:
        with pytest.raises(StateBackendError) as info:
            await asyncio.wait_for(store.set("tls", "k", {"v": 1}), WITHIN)
        if read_too:
            with pytest.raises(StateBackendError):
                await asyncio.wait_for(store.get("tls", "k"), WITHIN)
    finally:
        await store.close()
    err = info.value
    assert err.backend == "redis"
    if secret is not None:
        for text in (str(err), err.url, repr(err), repr(store)):
            assert secret not in text, f"the password shows in {text!r}"
    return err


def not_a_raw_ssl_error(err: StateBackendError) -> None:
    assert not isinstance(err, ssl.SSLError | OSError), type(err).__mro__


async def test_tls_store_sets_gets_and_watches(state: StateManager) -> None:
    assert (await state.set("bookings", "b1", {"status": "pending"})).new_value == {"status": "pending"}
    assert await state.get("bookings", "b1") == {"status": "pending"}
    before = await state.revision()
    async with state.watch("bookings") as changes:
        await state.set("elsewhere", "x", 1)
        await state.update("bookings", "b1", [{"type": "set", "path": "status", "value": "confirmed"}])
        change = await asyncio.wait_for(anext(changes), WITHIN)
    assert (change.event, change.scope, change.key) == ("updated", "bookings", "b1")
    assert change.old_value == {"status": "pending"} and change.new_value == {"status": "confirmed"}
    assert change.revision > before
    assert await state.keys("bookings") == ["b1"]
    assert await state.delete("bookings", "b1") == {"status": "confirmed"}
    assert await state.get("bookings", "b1") is None


async def test_the_url_with_localhost_matches_the_certificate(tmp_path: Path) -> None:
    await make_redis_tls(tmp_path)
    store = StateManager.from_url(tls_url("motia", host="localhost"))
    try:
        await asyncio.wait_for(store.set("s", "k", 1), WITHIN)
        assert await store.get("s", "k") == 1
    finally:
        await store.close()


async def test_a_wrong_ca_is_a_backend_error() -> None:
    err = await backend_error(tls_url("motia", query=f"ssl_ca_certs={TLS_DIR / 'other-ca.crt'}"), secret="motia-tls-pw")
    not_a_raw_ssl_error(err)
    assert "certificate" in str(err).lower() or "ssl" in str(err).lower(), str(err)


async def test_no_ca_is_a_backend_error() -> None:
    # The system's trust store does not know the test CA.
    err = await backend_error(tls_url("motia", query=""), secret="motia-tls-pw")
    not_a_raw_ssl_error(err)


async def test_a_plain_connection_to_the_tls_port_is_a_backend_error() -> None:
    await backend_error(f"redis://motia:motia-tls-pw@127.0.0.1:{TLS_PORT}/0", secret="motia-tls-pw")


async def test_ssl_cert_reqs_none_skips_verification(tmp_path: Path) -> None:
    await make_redis_tls(tmp_path)
    store = StateManager.from_url(tls_url("motia", query="ssl_cert_reqs=none"))
    try:
        await asyncio.wait_for(store.set("s", "k", [1, 2]), WITHIN)
        assert await store.get("s", "k") == [1, 2]
    finally:
        await store.close()


async def test_ssl_cert_reqs_required_with_the_ca_works(tmp_path: Path) -> None:
    await make_redis_tls(tmp_path)
    store = StateManager.from_url(tls_url("motia", query=f"ssl_cert_reqs=required&ssl_ca_certs={TLS_DIR / 'ca.crt'}"))
    try:
        await asyncio.wait_for(store.set("s", "k", "v"), WITHIN)
        assert await store.get("s", "k") == "v"
    finally:
        await store.close()


def test_a_bad_ssl_cert_reqs_is_a_config_error() -> None:
    with pytest.raises(StateConfigError, match="ssl_cert_reqs"):
        StateManager.from_url(tls_url("motia", query="ssl_cert_reqs=sometimes"))


@pytest.mark.parametrize("query", ["ssl_check_hostname=false", "ssl_min_version=TLSv1_2", "ssl_ca_path={dir}"])
async def test_the_other_tls_parameters_are_taken(tmp_path: Path, query: str) -> None:
    await make_redis_tls(tmp_path)
    url = tls_url("motia", query=f"ssl_ca_certs={TLS_DIR / 'ca.crt'}&{query}".format(dir=TLS_DIR))
    name = query.split("=", 1)[0]
    if name not in _tls_parameters_taken():  # an older redis-py (ssl_ca_path came in 6.x): refused by name
        with pytest.raises(StateConfigError, match=name):
            StateManager.from_url(url)
        return
    store = StateManager.from_url(url)
    try:
        await asyncio.wait_for(store.set("s", "k", query), WITHIN)
        assert await store.get("s", "k") == query
    finally:
        await store.close()


def test_a_bad_ssl_min_version_is_a_config_error_naming_it() -> None:
    with pytest.raises(StateConfigError) as info:
        StateManager.from_url(tls_url("motia", query="ssl_min_version=TLSv9"))
    # Names the parameter and what it takes (the URL alone, quoted in the message, would not say that).
    outside_url = re.sub(r"rediss://\S*", "<url>", str(info.value))
    assert "ssl_min_version" in outside_url and "TLSv1_2" in outside_url, str(info.value)


async def test_a_client_certificate_signed_by_the_ca_is_accepted(tmp_path: Path) -> None:
    await make_redis_tls(tmp_path)
    query = (
        f"ssl_ca_certs={TLS_DIR / 'ca.crt'}&ssl_certfile={TLS_DIR / 'client.crt'}&ssl_keyfile={TLS_DIR / 'client.key'}"
    )
    store = StateManager.from_url(tls_url("motia", query=query))
    try:
        await asyncio.wait_for(store.set("s", "k", {"cert": True}), WITHIN)
        assert await store.get("s", "k") == {"cert": True}
    finally:
        await store.close()


async def test_a_client_certificate_of_another_ca_is_refused() -> None:
    query = (
        f"ssl_ca_certs={TLS_DIR / 'ca.crt'}&ssl_certfile={TLS_DIR / 'stranger.crt'}"
        f"&ssl_keyfile={TLS_DIR / 'stranger.key'}"
    )
    err = await backend_error(tls_url("motia", query=query), secret="motia-tls-pw")
    not_a_raw_ssl_error(err)


async def test_a_missing_client_certificate_file_is_an_error_not_a_raw_one() -> None:
    require_tls()
    query = f"ssl_ca_certs={TLS_DIR / 'ca.crt'}&ssl_certfile={TLS_DIR / 'nowhere.crt'}"
    try:
        store = StateManager.from_url(tls_url("motia", query=query), connect_timeout=3)
    except StateConfigError:
        return  # refused up front: fine
    try:
        with pytest.raises((StateBackendError, StateConfigError)):
            await asyncio.wait_for(store.get("s", "k"), WITHIN)
    finally:
        await store.close()


async def test_the_acl_user_logs_in_and_is_that_user(state: StateManager, tmp_path: Path) -> None:
    import redis.asyncio as aioredis

    await state.set("who", "k", 1)
    client = aioredis.from_url(TLS_URL)
    try:
        assert await client.acl_whoami() == "motia"
        # The store's connections are the motia user's: the key it wrote is there, as JSON text.
        assert await client.get("motia:state:{who}:k") == b"1"
    finally:
        await client.aclose()


async def test_a_wrong_password_is_a_backend_error_without_the_password() -> None:
    err = await backend_error(tls_url("motia", "not-the-Pa55word"), secret="not-the-Pa55word")
    assert "***" in err.url or "not-the-Pa55word" not in err.url
    message = str(err).lower()
    assert any(word in message for word in ("password", "auth", "credential")), str(err)


async def test_an_unknown_user_is_a_backend_error_without_the_password() -> None:
    await backend_error(tls_url("motia", "s3cret-of-nobody").replace("motia:", "nobody:", 1), secret="s3cret-of-nobody")


async def test_a_user_without_a_needed_command_gets_an_error_naming_it(tmp_path: Path) -> None:
    await make_redis_tls(tmp_path)
    err = await backend_error(tls_url("motia-limited"), secret="motia-tls-limited", read_too=False)
    message = str(err)
    assert re.search(r"\beval(sha)?\b", message, re.IGNORECASE), message
    assert re.search(r"permission|NOPERM|ACL", message, re.IGNORECASE), message


async def test_every_operation_works_with_only_the_documented_commands(tmp_path: Path) -> None:
    """The ACL user ``motia-minimal`` has only the commands the docs list: every operation must work with them."""
    await make_redis_tls(tmp_path)
    store = StateManager.from_url(tls_url("motia-minimal"), connect_timeout=3)
    try:
        await store.set("w", "a", {"x": 1})
        await store.set("w", "short", 1, ttl=0.1)
        assert (await store.update("w", "a", [{"type": "increment", "path": "x", "by": 1}])).new_value == {"x": 2}
        await store.set_many("w", {"b": 1, "c": 2})
        assert await store.get_many("w", ["a", "b", "nope"]) == {"a": {"x": 2}, "b": 1}
        assert await store.delete_many("w", ["b"]) == 1
        assert sorted(await store.keys("w")) == ["a", "c", "short"]
        assert len(await store.list("w")) == 3
        assert "w" in await store.list_groups()
        assert await store.ttl("w", "a") is None
        assert {i.key for i in await store.items("w")} >= {"a", "c"}
        await asyncio.sleep(0.3)
        assert await store.cleanup() >= 0
        rev = await store.revision("w")
        async with store.watch("w") as changes:
            await store.set("w", "d", 1)
            assert (await asyncio.wait_for(anext(changes), WITHIN)).key == "d"
        async with store.watch("w", since=rev) as changes:
            assert (await asyncio.wait_for(anext(changes), WITHIN)).key == "d"
        async with store.watch() as changes:  # every scope (one server: allowed)
            await store.set("w2", "e", 1)
            assert (await asyncio.wait_for(anext(changes), WITHIN)).scope == "w2"

        seen: list[Change] = []

        @store.on_change("acl-trigger", scope="w")
        async def handler(change: Change) -> None:
            seen.append(change)

        triggers = store.adapter.trigger_store()  # type: ignore[attr-defined]
        task = asyncio.ensure_future(store.run_triggers())
        try:

            async def registered() -> bool:  # a new trigger starts at the revision current when registered
                if task.done():
                    raise AssertionError(f"run_triggers() ended: {task.exception()!r}")
                return any(s.name == "acl-trigger" and s.owners for s in await triggers.status())

            await eventually(registered, "the trigger was registered and its partitions taken")
            await asyncio.sleep(0.2)
            await store.set("w", "f", 1)
            await eventually(lambda: bool(seen), "the trigger handled the change")
        finally:
            task.cancel()
            [ended] = await asyncio.gather(task, return_exceptions=True)
        assert ended is None or isinstance(ended, asyncio.CancelledError), f"run_triggers() failed: {ended!r}"
        assert [(c.key, c.event) for c in seen] == [("f", "created")]
        assert await store.delete("w", "a") == {"x": 2}
        assert await store.clear("w") >= 1
        assert await store.keys("w") == []
    finally:
        await store.close()
