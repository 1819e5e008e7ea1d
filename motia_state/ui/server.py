"""The state browser's web server: a Starlette app serving one page and the JSON API it calls.

Every answer of the API is JSON; a failure is ``{"error": {"message": ..., "field": ...}}`` with a 4xx/5xx
status (``field`` names the form field at fault, when there is one). Changes reach the page as server-sent
events from ``watch``. See :mod:`motia_state.ui` for the security rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import browse
from ..changes import Change, ChangeStream
from ..config import Settings
from ..errors import (
    SchemaOutOfDateError,
    StateBackendError,
    StateConfigError,
    StateError,
    StateKeyError,
    StateValueError,
    mask_secrets,
)
from ..manager import StateManager
from ..values import check_name

__all__ = ["TOKEN_COOKIE", "TOKEN_HEADER", "Browser", "create_app"]

TOKEN_HEADER: Final = "X-Motia-State-Token"
TOKEN_COOKIE: Final = "motia_state_token"
PAGE: Final = 50
MAX_PAGE: Final = 500
# A comment line this often keeps proxies and the browser from timing an idle event stream out.
KEEPALIVE: Final = 15.0
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_STATIC = resources.files(__package__) / "static"
_SECURITY_HEADERS: Final = {
    # Nothing inline and nothing from elsewhere: a value that slipped through unescaped could not run.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the URL may carry the token
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class Refused(Exception):
    """A request the API refuses: answered as ``{"error": ...}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Browser:
    """What the app serves: the store, its access rules, and the open event streams (ended at shutdown)."""

    settings: Settings
    token: str
    read_only: bool = False
    #: Reads need the token too (any address but loopback); else only writes do.
    token_for_reads: bool = False
    #: When set, the Host header must name one of these (loopback: no DNS rebinding onto the page).
    allowed_hosts: frozenset[str] | None = None
    state: StateManager | None = None
    streams: set[ChangeStream] = field(default_factory=set)
    closing: bool = False

    @property
    def manager(self) -> StateManager:
        if self.state is None:
            raise Refused(503, "the store is not open yet")
        return self.state

    def end_streams(self) -> None:
        """End every open event stream (their responses finish; the server can then stop at once)."""
        self.closing = True
        for stream in list(self.streams):
            stream.end()


# --- access ---------------------------------------------------------------------------------------------------


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware: the Host check, the token, read-only, and the security headers on every answer."""

    def __init__(self, app: ASGIApp, browser: Browser) -> None:
        self.app = app
        self.browser = browser

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            redirect = self._check(request)
        except Refused as exc:
            await _error(exc.status, str(exc), exc.field)(scope, receive, send)
            return
        if redirect is not None:
            await redirect(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in _SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _check(self, request: Request) -> Response | None:
        b = self.browser
        if b.allowed_hosts is not None:
            host = _host_name(request.headers.get("host", "")).lower()
            if host not in b.allowed_hosts:
                raise Refused(403, f"this page is served for {', '.join(sorted(b.allowed_hosts))}, not {host!r}")
        header = request.headers.get(TOKEN_HEADER)
        if request.method in UNSAFE_METHODS:
            # The header, never the cookie: a page of another site cannot set it, and a request carrying it
            # from elsewhere needs a CORS preflight this server never grants.
            if not _same(header, b.token):
                raise Refused(403, f"a change needs the {TOKEN_HEADER} header with this browser's token")
            origin = request.headers.get("origin")
            if origin is not None and origin != "null" and origin.split("://", 1)[-1] != request.headers.get("host"):
                raise Refused(403, f"a change from another origin ({origin}) is refused")
            if b.read_only:
                raise Refused(403, "this browser is read-only (motia-state ui --read-only): nothing is written")
            return None
        if not b.token_for_reads or _same(header, b.token) or _same(request.cookies.get(TOKEN_COOKIE), b.token):
            return None
        given = request.query_params.get("token")
        if request.method == "GET" and request.url.path == "/" and _same(given, b.token):
            # The printed URL's token becomes a cookie for this origin and leaves the address bar.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, b.token, httponly=True, samesite="strict", path="/")
            return response
        raise Refused(401, "this browser needs its token: open the URL that motia-state ui printed (?token=...)")


# --- answers --------------------------------------------------------------------------------------------------


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"message": mask_secrets(message)}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status)


def _store_error(exc: StateError) -> Refused:
    """The HTTP answer for a store error, worded as the CLI words it (``describe``)."""
    from ..cli.common import describe

    text = describe(exc)
    if isinstance(exc, StateBackendError | SchemaOutOfDateError):
        return Refused(503, text)
    if isinstance(exc, StateConfigError):
        return Refused(409, text)
    if isinstance(exc, ValueError):  # StateKeyError, StateValueError, UpdateOpError
        return Refused(400, text)
    return Refused(500, text)


def _json(value: Any, status: int = 200) -> Response:
    return Response(_dumps(value), status_code=status, media_type="application/json")


def _dumps(value: Any) -> str:
    # Stored values are JSON already, so they always dump (ASCII-escaped: safe in an event stream's data line).
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


Handler = Callable[[Request, Browser], Awaitable[Response]]


def _endpoint(handler: Handler, browser: Browser) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return await handler(request, browser)
        except Refused as exc:
            return _error(exc.status, str(exc), exc.field)
        except StateError as exc:
            refused = _store_error(exc)
            return _error(refused.status, str(refused), refused.field)

    return run


# --- reading requests -----------------------------------------------------------------------------------------


def _name(value: object, what: str) -> str:
    try:
        return check_name(what, value)
    except StateKeyError as exc:
        raise Refused(400, str(exc), what) from None


def _query_name(request: Request, what: str) -> str:
    return _name(request.query_params.get(what), what)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise Refused(400, f"limit must be a whole number from 1 to {MAX_PAGE}, got {raw!r}", "limit")
    return int(raw)


def _seconds_left(expires_at: datetime | None) -> float | None:
    if expires_at is None:
        return None
    return max(0.0, round((expires_at - datetime.now(UTC)).total_seconds(), 3))


def _entry(key: str, value: Any, expires_at: datetime | None) -> dict[str, Any]:
    return {
        "key": key,
        "value": value,
        "expires_at": None if expires_at is None else expires_at.isoformat(),
        "ttl": _seconds_left(expires_at),
    }


def _feed(state: StateManager) -> tuple[bool, bool, str | None]:
    """(records changes, can watch every scope, why not)."""
    try:
        state._check_changes()
    except StateConfigError as exc:
        return False, False, str(exc)
    try:
        state._check_changes(every_scope=True)
    except StateConfigError as exc:
        return True, False, str(exc)
    return True, True, None


async def info(request: Request, b: Browser) -> Response:
    state = b.manager
    adapter = await state._connected_adapter()
    changes, every_scope, why = _feed(state)
    return _json(
        {
            "store": b.settings.masked_url,
            "backend": b.settings.kind,
            "read_only": b.read_only,
            "changes": changes,
            "watch_all": every_scope,
            "changes_reason": why,
            "triggers": changes and hasattr(adapter, "trigger_store"),
            "default_ttl": state.default_ttl,
        }
    )


async def scopes(request: Request, b: Browser) -> Response:
    limit = _limit(request)
    after = request.query_params.get("after") or None
    search = request.query_params.get("search") or None
    found = await browse.scope_page(b.manager, after=after, limit=limit + 1, search=search)
    page = found[:limit]
    return _json({"scopes": page, "next": page[-1] if len(found) > limit else None})


def _filters(raw: str | None) -> list[dict[str, Any]]:
    """The ``filters`` parameter: a JSON list of ``{"path", "op", "value"}`` as the form has them (text)."""
    from ..cli.common import CLIFailure
    from ..cli.scopes import filter_path, filter_value

    if not raw:
        return []
    try:
        given = json.loads(raw)
    except json.JSONDecodeError:
        raise Refused(400, "filters must be a JSON list of {path, op, value}", "filters") from None
    if not isinstance(given, list):
        raise Refused(400, "filters must be a JSON list of {path, op, value}", "filters")
    out: list[dict[str, Any]] = []
    for i, f in enumerate(given):
        where = f"filter-{i}"
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not isinstance(f.get("op"), str):
            raise Refused(400, f"filter {i + 1}: needs a path and an op", where)
        try:
            one: dict[str, Any] = {"path": filter_path(f["path"], f"filter {i + 1}"), "op": f["op"]}
            if isinstance(f.get("value"), str) and f["op"] not in ("isNull", "isNotNull"):
                one["value"] = filter_value(f["value"], f"filter {i + 1}")
        except CLIFailure as exc:
            raise Refused(400, str(exc), where) from None
        out.append(one)
    return out


async def entries(request: Request, b: Browser) -> Response:
    scope = _query_name(request, "scope")
    limit = _limit(request)
    after = request.query_params.get("after") or None
    filters = _filters(request.query_params.get("filters"))
    try:
        found = await b.manager.items(scope, filters=filters, limit=limit + 1, after=after)
    except StateValueError as exc:
        raise Refused(400, str(exc), "filters") from None
    page = found[:limit]
    return _json(
        {
            "scope": scope,
            "entries": [_entry(i.key, i.value, i.expires_at) for i in page],
            "next": page[-1].key if len(found) > limit else None,
        }
    )


async def entry(request: Request, b: Browser) -> Response:
    scope, key = _query_name(request, "scope"), _query_name(request, "key")
    state = b.manager
    adapter = await state._connected_adapter()
    try:
        stored = await adapter.get_entry(scope, key)
    except Exception as exc:
        state._raise(exc)
    if stored is None:
        raise Refused(404, f"no entry {key!r} in scope {scope!r}")
    return _json({"scope": scope, **_entry(key, stored.value, stored.expires_at)})


async def history(request: Request, b: Browser) -> Response:
    scope, key = _query_name(request, "scope"), _query_name(request, "key")
    limit = _limit(request)
    raw = request.query_params.get("before")
    if raw is not None and not raw.isdigit():
        raise Refused(400, f"before must be a revision (a whole number), got {raw!r}", "before")
    found = await browse.key_history(b.manager, scope, key, before=None if raw is None else int(raw), limit=limit + 1)
    page = found[:limit]
    return _json({"changes": [c.to_json() for c in page], "next": page[-1].revision if len(found) > limit else None})


async def triggers(request: Request, b: Browser) -> Response:
    from ..cli.common import CLIFailure
    from ..cli.triggers import trigger_statuses

    state = b.manager
    changes, _, why = _feed(state)
    if not changes:
        return _json({"available": False, "reason": why, "triggers": []})
    try:
        rows = await trigger_statuses(state)
    except CLIFailure as exc:
        return _json({"available": False, "reason": str(exc), "triggers": []})
    return _json({"available": True, "reason": None, "triggers": rows})


# --- changing requests ----------------------------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused(415, "send the request body as JSON (Content-Type: application/json)")
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    return body


def _ttl(raw: object) -> float | None:
    """The form's TTL: empty = keep the entry's expiry, else seconds > 0."""
    if raw is None or raw == "":
        return None
    ttl: float | None = None
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            ttl = float(raw)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        ttl = float(raw)
    if ttl is None or not math.isfinite(ttl) or ttl <= 0:
        raise Refused(400, f"ttl must be a number of seconds > 0 (or empty to keep the expiry), got {raw!r}", "ttl")
    return ttl


def _confirmed(body: dict[str, Any]) -> None:
    if body.get("confirm") is not True:
        raise Refused(400, 'this removes state: send "confirm": true once the user has confirmed', "confirm")


async def set_entry(request: Request, b: Browser) -> Response:
    from ..cli.common import CLIFailure, parse_json

    body = await _body(request)
    scope, key = _name(body.get("scope"), "scope"), _name(body.get("key"), "key")
    text = body.get("value")
    if not isinstance(text, str):
        raise Refused(400, "value must be the JSON text of the new value", "value")
    try:
        value = parse_json(text, "the value")
    except CLIFailure as exc:
        raise Refused(400, str(exc), "value") from None
    ttl = _ttl(body.get("ttl"))
    state = b.manager
    try:
        if ttl is None:
            # No TTL given: the entry keeps its expiry (update does; a new entry gets the store's default).
            result = await state.update(scope, key, [{"type": "set", "path": "", "value": value}])
        else:
            result = await state.set(scope, key, value, ttl=ttl)
    except StateValueError as exc:
        raise Refused(400, str(exc), "value") from None
    return _json({"old_value": result.old_value, "new_value": result.new_value, "ttl": await state.ttl(scope, key)})


async def delete_entry(request: Request, b: Browser) -> Response:
    body = await _body(request)
    scope, key = _name(body.get("scope"), "scope"), _name(body.get("key"), "key")
    _confirmed(body)
    old = await b.manager.delete(scope, key)
    return _json({"deleted": old is not None, "old_value": old})


async def clear_scope(request: Request, b: Browser) -> Response:
    body = await _body(request)
    scope = _name(body.get("scope"), "scope")
    _confirmed(body)
    return _json({"removed": await b.manager.clear(scope)})


async def retry(request: Request, b: Browser) -> Response:
    from ..cli.common import CLIFailure
    from ..cli.triggers import request_retry

    body = await _body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise Refused(400, "name must be the trigger's name", "name")
    try:
        count = await request_retry(b.manager, name)
    except CLIFailure as exc:
        raise Refused(404 if exc.exit_code == 1 else 409, str(exc), "name") from None
    return _json({"trigger": name, "retrying": count})


# --- live changes ---------------------------------------------------------------------------------------------


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {_dumps(data)}\n\n"


async def _changes(b: Browser, scope: str | None, key: str | None) -> AsyncIterator[str]:
    state = b.manager
    try:
        stream = state.watch(scope, key=key)
        async with stream as changes:
            b.streams.add(stream)
            try:
                yield _event("ready", {"revision": await state.revision(scope) if not b.closing else None})
                while not b.closing:
                    try:
                        change: Change = await asyncio.wait_for(anext(changes), KEEPALIVE)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    except StopAsyncIteration:
                        break
                    yield _event("change", change.to_json())
            finally:
                b.streams.discard(stream)
    except StateConfigError as exc:
        # No feed (or none of every scope): the page polls instead.
        yield _event("unavailable", {"message": str(exc)})
    except StateError as exc:
        yield _event("failed", {"message": mask_secrets(str(exc))})


async def events(request: Request, b: Browser) -> Response:
    scope = request.query_params.get("scope") or None
    key = request.query_params.get("key") or None
    if scope is not None:
        scope = _name(scope, "scope")
    if key is not None:
        if scope is None:
            raise Refused(400, "key needs a scope", "key")
        key = _name(key, "key")
    return StreamingResponse(
        _changes(b, scope, key),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


# --- the page -------------------------------------------------------------------------------------------------


async def page(request: Request, b: Browser) -> Response:
    from html import escape

    html = (_STATIC / "index.html").read_text("utf-8")
    html = html.replace("{{token}}", escape(b.token, quote=True))
    html = html.replace("{{read_only}}", "true" if b.read_only else "false")
    return Response(html, media_type="text/html; charset=utf-8")


def create_app(browser: Browser) -> ASGIApp:
    """The ASGI app browsing ``browser.settings``'s store (opened at startup, closed at shutdown)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # `motia-state ui` opens the store before it listens; otherwise (an embedding, the tests) it opens here.
        state = browser.state
        if state is None:
            state = browser.settings.build(StateManager)
            try:
                await state.connect()
            except BaseException:
                with contextlib.suppress(Exception):
                    await state.close()
                raise
            browser.state = state
        try:
            yield
        finally:
            browser.end_streams()
            with contextlib.suppress(Exception):
                await state.close()

    routes: list[Route | Mount] = [
        Route("/", _endpoint(page, browser)),
        Route("/api/info", _endpoint(info, browser)),
        Route("/api/scopes", _endpoint(scopes, browser)),
        Route("/api/entries", _endpoint(entries, browser)),
        Route("/api/entry", _endpoint(entry, browser)),
        Route("/api/history", _endpoint(history, browser)),
        Route("/api/triggers", _endpoint(triggers, browser)),
        Route("/api/events", _endpoint(events, browser)),
        Route("/api/set", _endpoint(set_entry, browser), methods=["POST"]),
        Route("/api/delete", _endpoint(delete_entry, browser), methods=["POST"]),
        Route("/api/clear", _endpoint(clear_scope, browser), methods=["POST"]),
        Route("/api/retry", _endpoint(retry, browser), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(_STATIC))),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, browser)
