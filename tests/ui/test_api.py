"""The state browser's HTTP API, endpoint by endpoint (good and bad input), on every backend, in-process.

The app runs under Starlette's TestClient (its own event loop in a thread); ``Api.run`` runs a coroutine
there, on the browser's own StateManager, to seed or check the store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from motia_state import StateManager
from motia_state.config import settings_from_url
from motia_state.ui import Browser, create_app, is_loopback
from motia_state.ui.server import LOOPBACK_NAMES, TOKEN_COOKIE, TOKEN_HEADER
from tests.conftest import MARKS, make_postgres, make_redis
from tests.services import PG_URL, REDIS_URL

TOKEN = "test-token-0123456789abcdef"
BASE = "http://127.0.0.1:8710"


class Api:
    """The app under test, with the token the page would send."""

    def __init__(self, client: TestClient, browser: Browser) -> None:
        self.client = client
        self.browser = browser

    @property
    def state(self) -> StateManager:
        assert self.browser.state is not None
        return self.browser.state

    def run(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` on the app's event loop (where its StateManager is connected)."""
        return self.client.portal.call(fn)  # type: ignore[union-attr]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params)

    def post(self, path: str, body: Any, *, token: str | None = TOKEN, **headers: str) -> httpx.Response:
        sent = {"content-type": "application/json", **headers}
        if token is not None:
            sent[TOKEN_HEADER] = token
        return self.client.post(path, content=json.dumps(body), headers=sent)


def _url(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    factory = make_postgres if backend == "postgres" else make_redis

    async def empty() -> None:
        await (await factory(tmp_path)).close()  # the shared test database/db, emptied

    asyncio.run(empty())
    return PG_URL if backend == "postgres" else REDIS_URL


def _client(browser: Browser) -> TestClient:
    return TestClient(create_app(browser), base_url=BASE, raise_server_exceptions=True)


@pytest.fixture(params=[pytest.param(b, marks=MARKS.get(b, [])) for b in ("memory", "sqlite", "postgres", "redis")])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    browser = Browser(settings_from_url(_url(str(request.param), tmp_path), {}), TOKEN, allowed_hosts=LOOPBACK_NAMES)
    with _client(browser) as client:
        yield Api(client, browser)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    browser = Browser(settings_from_url(f"sqlite:///{tmp_path / 'state.db'}", {}), TOKEN, allowed_hosts=LOOPBACK_NAMES)
    with _client(browser) as client:
        yield Api(client, browser)


def seed(api: Api, data: dict[str, dict[str, Any]], ttl: float | None = None) -> None:
    async def write() -> None:
        for scope, entries in data.items():
            await api.state.set_many(scope, entries, ttl=ttl)

    api.run(write)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["message"]
    return error


# --- the page and its guards ------------------------------------------------------------------------------------


def test_page_carries_token_and_read_only_flag_with_strict_headers(api: Api) -> None:
    r = api.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'<meta name="motia-state-token" content="{TOKEN}">' in r.text
    assert '<meta name="motia-state-read-only" content="false">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    for asset, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        served = api.get(asset)
        assert served.status_code == 200 and kind in served.headers["content-type"] and len(served.text) > 1000


def test_a_host_other_than_loopback_is_refused(api: Api) -> None:
    # DNS rebinding: a name the attacker controls, resolved to 127.0.0.1, must not reach the page or the API.
    for path in ("/", "/api/info", "/api/scopes"):
        r = api.client.get(path, headers={"host": "evil.example:8710"})
        assert "evil.example" in error_of(r, 403)["message"]
    for host in ("localhost:8710", "127.0.0.1", "[::1]:8710"):
        assert api.client.get("/api/info", headers={"host": host}).status_code == 200


def test_info_names_the_store_masked_and_what_it_can_do(api: Api) -> None:
    info = api.get("/api/info").json()
    assert info["backend"] == api.browser.settings.kind and info["read_only"] is False
    assert info["store"] == api.browser.settings.masked_url
    assert info["changes"] is True and info["watch_all"] is True and info["triggers"] is True


def test_password_never_shown(tmp_path: Path) -> None:
    browser = Browser(settings_from_url("redis://:s3cret-pw@127.0.0.1:1/0", {}), TOKEN)
    browser.state = StateManager.from_url("memory://")  # the page's store is not opened: only its URL is shown
    with _client(browser) as client:
        text = client.get("/api/info").text
    assert "s3cret-pw" not in text and "127.0.0.1:1" in text


# --- scopes -----------------------------------------------------------------------------------------------------

SCOPES = ["B", "a", "a b/c?d#e", "a%", "a_", "é", "zeta", "[x]", "🦀"]


def test_scopes_are_paged_in_code_point_order(api: Api) -> None:
    seed(api, {s: {"k": 1} for s in SCOPES})
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = api.get("/api/scopes", limit=2, **({"after": after} if after else {})).json()
        seen += page["scopes"]
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == page["scopes"][-1]
        after = page["next"]
    assert seen == sorted(SCOPES) and pages == 5
    assert api.get("/api/scopes").json() == {"scopes": sorted(SCOPES), "next": None}


def test_scope_search_is_a_literal_case_sensitive_substring(api: Api) -> None:
    seed(api, {s: {"k": 1} for s in SCOPES})
    assert api.get("/api/scopes", search="a").json()["scopes"] == ["a", "a b/c?d#e", "a%", "a_", "zeta"]
    assert api.get("/api/scopes", search="%").json()["scopes"] == ["a%"]
    assert api.get("/api/scopes", search="_").json()["scopes"] == ["a_"]
    assert api.get("/api/scopes", search="b").json()["scopes"] == ["a b/c?d#e"]  # not "B"
    assert api.get("/api/scopes", search="nothing").json() == {"scopes": [], "next": None}


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "501", "1.5"])
def test_scopes_refuse_a_bad_limit(api: Api, limit: str) -> None:
    assert error_of(api.get("/api/scopes", limit=limit), 400)["field"] == "limit"


def test_expired_scopes_are_not_listed(api: Api) -> None:
    seed(api, {"short": {"k": 1}}, ttl=0.05)
    seed(api, {"long": {"k": 1}})
    api.run(lambda: asyncio.sleep(0.1))
    assert api.get("/api/scopes").json()["scopes"] == ["long"]


# --- entries, one entry ---------------------------------------------------------------------------------------


def test_entries_are_paged_with_values_and_time_left(api: Api) -> None:
    seed(api, {"orders": {f"k{i:02}": {"n": i, "tags": ["x"] * (i % 3)} for i in range(7)}})
    seed(api, {"orders": {"k99": {"n": 99}}}, ttl=300)
    page = api.get("/api/entries", scope="orders", limit=5).json()
    assert [e["key"] for e in page["entries"]] == ["k00", "k01", "k02", "k03", "k04"] and page["next"] == "k04"
    assert page["entries"][2] == {"key": "k02", "value": {"n": 2, "tags": ["x", "x"]}, "expires_at": None, "ttl": None}
    rest = api.get("/api/entries", scope="orders", limit=5, after="k04").json()
    assert [e["key"] for e in rest["entries"]] == ["k05", "k06", "k99"] and rest["next"] is None
    last = rest["entries"][-1]
    assert 295 < last["ttl"] <= 300 and last["expires_at"].endswith("+00:00")


def test_entries_filters_run_with_the_cli_syntax(api: Api) -> None:
    seed(api, {"orders": {"a": {"status": "confirmed", "total": 120}, "b": {"status": "open", "total": 80}}})
    seed(api, {"orders": {"c": {"status": "confirmed", "total": 20, "venue": {"city": "Paris"}}}})

    def keys(*filters: dict[str, str]) -> list[str]:
        r = api.get("/api/entries", scope="orders", filters=json.dumps(list(filters)))
        assert r.status_code == 200, r.text
        return [e["key"] for e in r.json()["entries"]]

    assert keys({"path": "status", "op": "eq", "value": "confirmed"}) == ["a", "c"]
    assert keys(
        {"path": "status", "op": "eq", "value": "confirmed"}, {"path": "total", "op": "gte", "value": "100"}
    ) == ["a"]
    assert keys({"path": '["venue", "city"]', "op": "startsWith", "value": '"Par"'}) == ["c"]
    assert keys({"path": "venue", "op": "isNull", "value": "ignored"}) == ["a", "b"]
    assert keys({"path": "total", "op": "lt", "value": '"100"'}) == []  # a string never compares with numbers


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ("not json", "filters"),
        ('{"path": "a"}', "filters"),
        ('[{"path": "a"}]', "filter-0"),
        ('[{"path": "a", "op": "eq", "value": "1"}, {"path": "[1", "op": "eq", "value": "1"}]', "filter-1"),
        ('[{"path": "a", "op": "eq", "value": "{bad"}]', "filter-0"),
        ('[{"path": "a", "op": "like", "value": "1"}]', "filters"),
    ],
)
def test_entries_refuse_bad_filters(api: Api, filters: str, field: str) -> None:
    seed(api, {"orders": {"a": {"status": "x"}}})
    assert error_of(api.get("/api/entries", scope="orders", filters=filters), 400)["field"] == field


def test_entries_and_entry_need_a_valid_scope_and_key(api: Api) -> None:
    assert error_of(api.get("/api/entries"), 400)["field"] == "scope"
    assert error_of(api.get("/api/entries", scope=""), 400)["field"] == "scope"
    assert error_of(api.get("/api/entry", scope="s"), 400)["field"] == "key"
    assert error_of(api.get("/api/entry", scope="s\x00", key="k"), 400)["field"] == "scope"


def test_entry_is_read_with_its_expiry_or_answers_404(api: Api) -> None:
    seed(api, {"s": {"k": {"html": "<script>alert(1)</script>"}}}, ttl=60)
    r = api.get("/api/entry", scope="s", key="k").json()
    assert r["value"] == {"html": "<script>alert(1)</script>"} and 55 < r["ttl"] <= 60
    assert "no entry" in error_of(api.get("/api/entry", scope="s", key="missing"), 404)["message"]


# --- history --------------------------------------------------------------------------------------------------


def test_history_is_newest_first_and_paged(api: Api) -> None:
    async def write() -> None:
        for i in range(5):
            await api.state.set("s", "k", i)
        await api.state.set("s", "other", 1)
        await api.state.set("t", "k", 1)
        await api.state.delete("s", "k")

    api.run(write)
    first = api.get("/api/history", scope="s", key="k", limit=4).json()
    events = [(c["event"], c["old_value"], c["new_value"]) for c in first["changes"]]
    assert events == [("deleted", 4, None), ("updated", 3, 4), ("updated", 2, 3), ("updated", 1, 2)]
    assert first["next"] == first["changes"][-1]["revision"]
    rest = api.get("/api/history", scope="s", key="k", limit=4, before=first["next"]).json()
    assert [(c["event"], c["new_value"]) for c in rest["changes"]] == [("updated", 1), ("created", 0)]
    assert rest["next"] is None
    assert all(c["scope"] == "s" and c["key"] == "k" for c in first["changes"] + rest["changes"])


def test_history_refuses_bad_input(api: Api) -> None:
    assert error_of(api.get("/api/history", scope="s", key="k", before="x"), 400)["field"] == "before"
    assert error_of(api.get("/api/history", scope="s"), 400)["field"] == "key"


def test_history_without_a_change_feed_says_so(tmp_path: Path) -> None:
    browser = Browser(settings_from_url(f"sqlite:///{tmp_path / 'off.db'}", {"changes": False}), TOKEN)
    with _client(browser) as client:
        assert "changes" in error_of(client.get("/api/history", params={"scope": "s", "key": "k"}), 409)["message"]
        info = client.get("/api/info").json()
        assert info["changes"] is False and info["triggers"] is False and "changes" in info["changes_reason"]
        assert client.get("/api/triggers").json()["available"] is False


# --- writing --------------------------------------------------------------------------------------------------


def stored(api: Api, scope: str, key: str) -> Any:
    return api.run(lambda: api.state.get(scope, key))


def test_set_creates_and_updates_keeping_the_expiry_unless_a_ttl_is_given(api: Api) -> None:
    r = api.post("/api/set", {"scope": "s", "key": "k", "value": '{"n": 1, "big": 12345678901234567890123}'})
    assert r.status_code == 200, r.text
    assert r.json()["old_value"] is None and r.json()["ttl"] is None
    assert stored(api, "s", "k") == {"n": 1, "big": 12345678901234567890123}
    r = api.post("/api/set", {"scope": "s", "key": "k", "value": "[1, 2.0]", "ttl": "120"})
    assert r.json()["old_value"] == {"n": 1, "big": 12345678901234567890123} and 115 < r.json()["ttl"] <= 120
    value = stored(api, "s", "k")
    assert value == [1, 2.0] and type(value[1]) is float
    r = api.post("/api/set", {"scope": "s", "key": "k", "value": '"text"', "ttl": ""})
    assert r.json()["new_value"] == "text" and 110 < r.json()["ttl"] <= 120  # the expiry is kept


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "s", "key": "k", "value": "{not json"}, "value"),
        ({"scope": "s", "key": "k", "value": "NaN"}, "value"),
        ({"scope": "s", "key": "k", "value": "1e999"}, "value"),
        ({"scope": "s", "key": "k", "value": '"a\\u0000b"'}, "value"),
        ({"scope": "s", "key": "k", "value": 5}, "value"),
        ({"scope": "s", "key": "k", "value": "1", "ttl": "-5"}, "ttl"),
        ({"scope": "s", "key": "k", "value": "1", "ttl": "soon"}, "ttl"),
        ({"scope": "s", "key": "k", "value": "1", "ttl": True}, "ttl"),
        ({"scope": "s", "key": "", "value": "1"}, "key"),
        ({"scope": "s", "value": "1"}, "key"),
        ({"scope": "s\x00", "key": "k", "value": "1"}, "scope"),
    ],
)
def test_set_refuses_bad_input_naming_the_field_and_writes_nothing(api: Api, body: dict[str, Any], field: str) -> None:
    seed(api, {"s": {"k": "before"}})
    assert error_of(api.post("/api/set", body), 400)["field"] == field
    assert stored(api, "s", "k") == "before"


def test_changes_need_the_token_header_a_json_body_and_the_same_origin(api: Api) -> None:
    seed(api, {"s": {"k": "before"}})
    body = {"scope": "s", "key": "k", "value": '"after"'}
    assert TOKEN_HEADER in error_of(api.post("/api/set", body, token=None), 403)["message"]
    error_of(api.post("/api/set", body, token="wrong-token-0123456789"), 403)
    # A cookie is not enough: a cross-site form would carry it.
    api.client.cookies.set(TOKEN_COOKIE, TOKEN)
    error_of(api.post("/api/set", body, token=None), 403)
    error_of(api.post("/api/set", body, origin="http://evil.example"), 403)
    r = api.client.post(
        "/api/set", content=json.dumps(body), headers={TOKEN_HEADER: TOKEN, "content-type": "text/plain"}
    )
    error_of(r, 415)
    r = api.client.post("/api/set", content=b"[1", headers={TOKEN_HEADER: TOKEN, "content-type": "application/json"})
    error_of(r, 400)
    for path in ("/api/delete", "/api/clear", "/api/retry"):
        error_of(api.post(path, {"scope": "s", "key": "k", "confirm": True, "name": "t"}, token=None), 403)
    assert stored(api, "s", "k") == "before"
    assert api.post("/api/set", body, origin=BASE).status_code == 200
    assert stored(api, "s", "k") == "after"


def test_reading_endpoints_never_write(api: Api) -> None:
    assert api.client.post("/api/scopes", headers={TOKEN_HEADER: TOKEN}).status_code == 405
    assert api.client.get("/api/set").status_code == 405


def test_delete_and_clear_need_a_confirmation(api: Api) -> None:
    seed(api, {"s": {"a": 1, "b": 2}, "t": {"a": 1}})
    assert error_of(api.post("/api/delete", {"scope": "s", "key": "a"}), 400)["field"] == "confirm"
    assert error_of(api.post("/api/delete", {"scope": "s", "key": "a", "confirm": "yes"}), 400)["field"] == "confirm"
    assert error_of(api.post("/api/clear", {"scope": "s"}), 400)["field"] == "confirm"
    assert api.run(lambda: api.state.keys("s")) == ["a", "b"]
    assert api.post("/api/delete", {"scope": "s", "key": "a", "confirm": True}).json() == {
        "deleted": True,
        "old_value": 1,
    }
    assert api.post("/api/delete", {"scope": "s", "key": "a", "confirm": True}).json()["deleted"] is False
    assert api.post("/api/clear", {"scope": "s", "confirm": True}).json() == {"removed": 1}
    assert api.run(lambda: api.state.list_groups()) == ["t"]
    assert error_of(api.post("/api/clear", {"scope": "", "confirm": True}), 400)["field"] == "scope"


# --- triggers ---------------------------------------------------------------------------------------------------


def test_triggers_list_and_retry_parked_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli.test_cli_triggers import _park_one

    url = f"sqlite:///{tmp_path / 'state.db'}"
    asyncio.run(_park_one(url, monkeypatch))
    browser = Browser(settings_from_url(url, {}), TOKEN)
    with _client(browser) as client:
        answer = client.get("/api/triggers").json()
        assert answer["available"] is True
        [row] = answer["triggers"]
        assert row["name"] == "confirm" and row["lag_changes"] >= 1 and row["handled"] == 1
        [parked] = row["parked"]
        assert (parked["key"], parked["error"], parked["retry_requested"]) == (
            "bad",
            "ValueError: cannot confirm bad",
            False,
        )
        headers = {TOKEN_HEADER: TOKEN, "content-type": "application/json"}
        r = client.post("/api/retry", content=json.dumps({"name": "confirm"}), headers=headers)
        assert r.json() == {"trigger": "confirm", "retrying": 1}
        assert client.get("/api/triggers").json()["triggers"][0]["parked"][0]["retry_requested"] is True
        r = client.post("/api/retry", content=json.dumps({"name": "nope"}), headers=headers)
        assert error_of(r, 404)["field"] == "name"
        r = client.post("/api/retry", content=json.dumps({"name": ""}), headers=headers)
        assert error_of(r, 400)["field"] == "name"


def test_triggers_on_a_store_without_any(api: Api) -> None:
    assert api.get("/api/triggers").json() == {"available": True, "reason": None, "triggers": []}


# --- read-only and the token off loopback -----------------------------------------------------------------------


def test_read_only_refuses_every_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"

    async def fill() -> None:
        async with StateManager.from_url(url) as state:
            await state.set("s", "k", "kept")

    asyncio.run(fill())
    browser = Browser(settings_from_url(url, {"migrate": "check"}), TOKEN, read_only=True)
    with _client(browser) as client:
        assert '<meta name="motia-state-read-only" content="true">' in client.get("/").text
        assert client.get("/api/info").json()["read_only"] is True
        headers = {TOKEN_HEADER: TOKEN, "content-type": "application/json"}
        for path, body in (
            ("/api/set", {"scope": "s", "key": "k", "value": '"changed"'}),
            ("/api/delete", {"scope": "s", "key": "k", "confirm": True}),
            ("/api/clear", {"scope": "s", "confirm": True}),
            ("/api/retry", {"name": "x"}),
        ):
            assert "read-only" in error_of(client.post(path, content=json.dumps(body), headers=headers), 403)["message"]
        assert client.get("/api/entry", params={"scope": "s", "key": "k"}).json()["value"] == "kept"


def test_off_loopback_every_request_needs_the_token(tmp_path: Path) -> None:
    browser = Browser(settings_from_url("memory://", {}), TOKEN, token_for_reads=True)
    with TestClient(create_app(browser), base_url="http://10.1.2.3:8710", follow_redirects=False) as client:
        for path in ("/", "/api/info", "/api/scopes", "/api/events", "/static/app.js"):
            assert "token" in error_of(client.get(path), 401)["message"]
        error_of(client.get("/", params={"token": "wrong-token-0123456789"}), 401)
        assert client.get("/api/info", headers={TOKEN_HEADER: TOKEN}).status_code == 200
        # The printed URL: its token becomes an HttpOnly, SameSite=Strict cookie and leaves the address bar.
        r = client.get("/", params={"token": TOKEN})
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        client.cookies.set(TOKEN_COOKIE, TOKEN)
        assert client.get("/").status_code == 200 and client.get("/api/scopes").status_code == 200
        # Changes still need the header, whatever the cookie.
        body = json.dumps({"scope": "s", "key": "k", "value": "1"})
        error_of(client.post("/api/set", content=body, headers={"content-type": "application/json"}), 403)
        ok = client.post("/api/set", content=body, headers={"content-type": "application/json", TOKEN_HEADER: TOKEN})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[(h, True) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]")],
        *[(h, False) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com")],
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_backend_that_is_down_is_a_503_naming_it_with_the_password_masked() -> None:
    url = "redis://:hidden-pw@127.0.0.1:1/0"
    browser = Browser(settings_from_url(url, {}), TOKEN)
    browser.state = StateManager.from_url(url)  # not connected: every read meets the refused connection
    with _client(browser) as client:
        for path, params in (("/api/scopes", {}), ("/api/entries", {"scope": "s"}), ("/api/info", {})):
            message = error_of(client.get(path, params=params), 503)["message"]
            assert "redis" in message.lower() and "127.0.0.1:1" in message and "hidden-pw" not in message
