"""The state browser in a real headless Chromium, against ``motia-state ui`` on a SQLite file (SPEC §13).

Every page is clicked through as a person would, every write is checked in the store itself, and changes made
by another process (the CLI) must show up without a reload within 2 s. Screenshots of each page land in
``test-output/ui/`` for a reviewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from motia_state import Change, StateManager
from tests.ui.conftest import CLI, Server, outside_write, shot

XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
XSS_KEY = "<img src=x onerror=window.__pwned=3>"
ODD = "a b/c?d#e"

ORDERS: dict[str, Any] = {
    "o1": {"status": "open", "total": 10, "items": [{"sku": "A-1", "qty": 2}], "customer": {"name": "Ann"}},
    "o2": {"status": "confirmed", "total": 25.5, "items": [], "customer": {"name": "Bob", "tags": ["vip", "eu"]}},
    "o3": {"status": "confirmed", "total": 99, "items": [{"sku": "B-2", "qty": 1}, {"sku": "C-3", "qty": 5}]},
    "o4": {"status": "cancelled", "total": 0, "note": None},
    "o5": [1, 2, [3, {"deep": True}]],
    "o6": "plain text",
    "o7": 42,
}
EXPIRING = ("o8", {"status": "confirmed", "total": 120, "customer": {"name": "Cy"}})
OTHERS: dict[str, dict[str, Any]] = {
    "users": {"u1": {"name": "Ann", "roles": ["admin"]}, "u2": {"name": "Bob", "roles": []}},
    "trace-1": {"step": 1},
    "é": {ODD: {"odd": True}},
    ODD: {"é": "accent"},
    "xss": {"payload": XSS, XSS_KEY: "a key that looks like HTML"},
    "Zeta": {"z": 1},
}
SCOPES = sorted(["orders", *OTHERS])  # code-point order: "Zeta" before "a b/c?d#e", "é" last


# --- helpers --------------------------------------------------------------------------------------------------


def sqlite_url(tmp_path: Path, query: str = "") -> str:
    return f"sqlite:///{tmp_path / 'state.db'}{query}"


def seed(url: str) -> None:
    async def fill() -> None:
        async with StateManager.from_url(url) as state:
            await state.set_many("orders", ORDERS)
            await state.set("orders", *EXPIRING, ttl=3600)
            for scope, entries in OTHERS.items():
                await state.set_many(scope, entries)

    asyncio.run(fill())


def in_store(url: str, call: Callable[[StateManager], Any]) -> Any:
    """``await call(state)`` on a fresh StateManager over ``url`` (the test's own view of the store)."""

    async def run() -> Any:
        async with StateManager.from_url(url) as state:
            return await call(state)

    return asyncio.run(run())


def stored(url: str, scope: str, key: str) -> Any:
    return in_store(url, lambda s: s.get(scope, key))


def wait(driver: Any, timeout: float = 10) -> WebDriverWait[Any]:
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,))


def until(driver: Any, check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """Wait until ``check()`` is truthy; fail naming ``what`` (and what the page shows) otherwise."""
    try:
        return wait(driver, timeout).until(lambda _: check())
    except Exception as exc:
        main = driver.execute_script("return document.getElementById('main')?.innerText ?? ''")
        raise AssertionError(f"waited {timeout} s for {what}; the page shows:\n{main[:2000]}") from exc


def texts(driver: Any, css: str) -> list[str]:
    """The textContent of every element matching ``css``, read at once (no stale elements)."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)", css
    )
    return found


def el(driver: Any, css: str) -> WebElement:
    return until(driver, lambda: next(iter(driver.find_elements(By.CSS_SELECTOR, css)), None), f"an element {css}")


def gone(driver: Any, css: str) -> bool:
    return not driver.find_elements(By.CSS_SELECTOR, css)


def h(*parts: str) -> str:
    """A hash route: ``h("scope", name)`` = ``#/scope/<name encoded>``."""
    return "#/" + "/".join(quote(p, safe="") for p in parts)


def load(driver: Any, server: Server, route: str = "") -> None:
    """Open ``route`` in a new document (never a same-document hash change), then wait for the page to start."""
    driver.get("about:blank")
    driver.get(server.url + route)
    until(
        driver,
        lambda: driver.execute_script("return document.getElementById('main')?.children.length > 0"),
        "the page to start",
    )


def follow_live(driver: Any) -> None:
    """Wait until the page's event stream is subscribed (then no change can be missed)."""
    until(driver, lambda: el(driver, "#live").text == "live", "#live to say live")


def fill(element: WebElement, text: str) -> None:
    element.clear()
    element.send_keys(text)


def row_keys(driver: Any) -> list[str]:
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#entries tr.entry')].map((tr) => tr.dataset.key)"
    )
    return found


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    seed(url)
    return url


# --- 1. list -> scope -> filters -> entry -> edit -> history ----------------------------------------------------------


def test_click_through_scopes_scope_filters_entry_edit_and_history(
    browser: Any, ui_server: Callable[..., Server], seeded: str
) -> None:
    server = ui_server(seeded)
    load(browser, server)
    until(browser, lambda: texts(browser, "#scopes li a.scope-link") == SCOPES, f"the scopes {SCOPES}")
    assert el(browser, "#store").text.startswith("sqlite")
    shot(browser, "scopes")

    el(browser, "#scope-search").send_keys("ers")
    until(browser, lambda: texts(browser, "#scopes li a.scope-link") == ["orders", "users"], "the search to narrow")
    assert "search=ers" in browser.current_url
    browser.find_element(By.CSS_SELECTOR, '#scopes li[data-scope="orders"] a.scope-link').click()

    keys = [*ORDERS, EXPIRING[0]]
    until(browser, lambda: row_keys(browser) == keys, f"the entries {keys}")
    assert el(browser, "#title").text == "orders"
    rows = {r.get_attribute("data-key"): r for r in browser.find_elements(By.CSS_SELECTOR, "#entries tr.entry")}
    # Values are collapsible JSON: objects and lists are <details>, the nested ones closed.
    o3 = rows["o3"].find_element(By.CSS_SELECTOR, "td.value")
    assert o3.find_element(By.CSS_SELECTOR, "details.j-object").get_attribute("open") is not None
    nested = o3.find_element(By.CSS_SELECTOR, "details.j-object details.j-list")
    assert nested.get_attribute("open") is None and "[ 2 items ]" in nested.text
    assert '"B-2"' in nested.get_attribute("textContent")
    assert rows["o6"].find_element(By.CSS_SELECTOR, "td.value").text == '"plain text"'
    assert rows["o7"].find_element(By.CSS_SELECTOR, "td.value").text == "42"
    assert rows["o1"].find_element(By.CSS_SELECTOR, ".ttl").text == "no expiry"
    left = rows["o8"].find_element(By.CSS_SELECTOR, ".ttl").text
    assert re.fullmatch(r"59m \d{1,2}s|1h 0m", left), left
    shot(browser, "scope")

    # §6 filters: status eq confirmed, then AND total gt 50.
    el(browser, "details.filters summary").click()
    el(browser, "#filter-add").click()
    fill(el(browser, ".filter-row:nth-of-type(1) .filter-path"), "status")
    Select(el(browser, ".filter-row:nth-of-type(1) .filter-op")).select_by_value("eq")
    fill(el(browser, ".filter-row:nth-of-type(1) .filter-value"), "confirmed")
    el(browser, "#filter-apply").click()
    until(browser, lambda: row_keys(browser) == ["o2", "o3", "o8"], "only the confirmed orders")
    el(browser, "#filter-add").click()
    fill(el(browser, ".filter-row:nth-of-type(2) .filter-path"), "total")
    Select(el(browser, ".filter-row:nth-of-type(2) .filter-op")).select_by_value("gt")
    fill(el(browser, ".filter-row:nth-of-type(2) .filter-value"), "50")
    el(browser, "#filter-apply").click()
    until(browser, lambda: row_keys(browser) == ["o3", "o8"], "the confirmed orders above 50")
    assert "2 filters" in el(browser, "#entries-status").text
    shot(browser, "scope-filtered")

    browser.find_element(By.CSS_SELECTOR, '#entries tr.entry[data-key="o3"] td.key a').click()
    until(browser, lambda: '"B-2"' in el(browser, "#entry-value").get_attribute("textContent"), "the entry page")
    assert el(browser, "#title").text == "o3"
    assert el(browser, "#entry-ttl").text == "no expiry"
    shot(browser, "entry")

    old = ORDERS["o3"]
    el(browser, "#edit-entry").click()
    editor = el(browser, "#edit-value")
    until(browser, lambda: json.loads(editor.get_attribute("value") or "null") == old, "the editor to hold the value")
    fill(editor, '{"status": "shipped", ')
    el(browser, "#edit-save").click()
    until(browser, lambda: el(browser, "#value-error").text, "a message next to the value")
    assert "JSON" in el(browser, "#value-error").text or "json" in el(browser, "#value-error").text
    assert "invalid" in (editor.get_attribute("class") or "")
    assert stored(seeded, "orders", "o3") == old  # nothing written
    shot(browser, "edit-error")

    new = {"status": "shipped", "total": 99, "carrier": {"name": "DHL", "ids": [7, 8]}}
    fill(editor, json.dumps(new))
    el(browser, "#edit-save").click()
    until(browser, lambda: browser.current_url.endswith(h("entry", "orders", "o3")), "the entry page again")
    until(browser, lambda: '"shipped"' in el(browser, "#entry-value").get_attribute("textContent"), "the new value")
    assert '"DHL"' in el(browser, "#entry-value").get_attribute("textContent")
    assert stored(seeded, "orders", "o3") == new

    el(browser, "#history-link").click()
    until(browser, lambda: len(texts(browser, "#history li.change")) == 2, "two changes in the history")
    changes = browser.find_elements(By.CSS_SELECTOR, "#history li.change")
    revisions = [int(c.get_attribute("data-revision")) for c in changes]
    assert revisions == sorted(revisions, reverse=True)  # newest first
    top, first = changes
    assert "updated" in top.get_attribute("class") and "created" in first.get_attribute("class")
    assert '"confirmed"' in top.find_element(By.CSS_SELECTOR, ".old").get_attribute("textContent")
    assert '"shipped"' in top.find_element(By.CSS_SELECTOR, ".new").get_attribute("textContent")
    assert "null" in first.find_element(By.CSS_SELECTOR, ".old").text
    shot(browser, "history")


def test_odd_scope_and_key_names_route_to_their_own_pages(
    browser: Any, ui_server: Callable[..., Server], seeded: str
) -> None:
    server = ui_server(seeded)
    load(browser, server)
    el(browser, f'#scopes li[data-scope="{ODD}"] a.scope-link').click()
    until(browser, lambda: row_keys(browser) == ["é"], f"the entries of {ODD!r}")
    assert el(browser, "#title").text == ODD
    browser.find_element(By.CSS_SELECTOR, "#entries tr.entry td.key a").click()
    until(browser, lambda: el(browser, "#entry-value").text == '"accent"', "the entry é")
    assert el(browser, "#title").text == "é"

    load(browser, server, h("scope", "é"))
    until(browser, lambda: row_keys(browser) == [ODD], "the entries of 'é'")
    browser.find_element(By.CSS_SELECTOR, "#entries tr.entry td.key a").click()
    until(browser, lambda: "odd" in el(browser, "#entry-value").text, f"the entry {ODD!r}")
    assert el(browser, "#title").text == ODD


# --- 2. live updates ------------------------------------------------------------------------------------------------


def measured(driver: Any, write: Callable[[], float], appeared: Callable[[], Any], what: str) -> float:
    """Seconds from the start of another process's write until the page shows it (asserted < 2 s)."""
    started = time.monotonic()
    committed = write()
    until(driver, appeared, what, timeout=10)
    seen = time.monotonic()
    took, after_commit = seen - started, seen - committed
    print(
        f"\nlive: {what}: {took * 1000:.0f} ms from the start of `motia-state set`"
        f" ({after_commit * 1000:.0f} ms after that process exited)"
    )
    assert took < 2.0, f"{what} took {took:.2f} s"
    return took


def test_a_change_from_another_process_appears_without_reload_within_2s(
    browser: Any, ui_server: Callable[..., Server], seeded: str
) -> None:
    server = ui_server(seeded)

    load(browser, server, h("scope", "orders"))
    until(browser, lambda: "o1" in row_keys(browser), "the entries")
    follow_live(browser)
    browser.execute_script("window.__sameDocument = true")  # gone if the page reloaded
    measured(
        browser,
        lambda: outside_write(seeded, "orders", "live-key", {"status": "new"}),
        lambda: "live-key" in row_keys(browser),
        "a new key on the scope page",
    )
    row = browser.find_element(By.CSS_SELECTOR, '#entries tr.entry[data-key="live-key"]')
    assert "changed" in row.get_attribute("class")
    assert '"new"' in row.get_attribute("textContent")
    assert browser.execute_script("return window.__sameDocument") is True

    load(browser, server)
    until(browser, lambda: texts(browser, "#scopes li a.scope-link") == SCOPES, "the scopes")
    follow_live(browser)
    browser.execute_script("window.__sameDocument = true")
    measured(
        browser,
        lambda: outside_write(seeded, "live-scope", "k", 1),
        lambda: "live-scope" in texts(browser, "#scopes li a.scope-link"),
        "a new scope on the scopes page",
    )
    assert texts(browser, "#scopes li a.scope-link") == sorted([*SCOPES, "live-scope"])
    assert browser.execute_script("return window.__sameDocument") is True

    load(browser, server, h("history", "orders", "o1"))
    until(browser, lambda: len(texts(browser, "#history li.change")) == 1, "the history of o1")
    follow_live(browser)
    browser.execute_script("window.__sameDocument = true")
    measured(
        browser,
        lambda: outside_write(seeded, "orders", "o1", {"status": "live"}),
        lambda: len(texts(browser, "#history li.change")) == 2,
        "a new change on the history page",
    )
    top = browser.find_element(By.CSS_SELECTOR, "#history li.change")
    assert "updated" in top.get_attribute("class")
    assert '"live"' in top.find_element(By.CSS_SELECTOR, ".new").get_attribute("textContent")
    assert browser.execute_script("return window.__sameDocument") is True

    load(browser, server, h("entry", "orders", "o2"))
    until(browser, lambda: '"Bob"' in el(browser, "#entry-value").get_attribute("textContent"), "the entry o2")
    follow_live(browser)
    measured(
        browser,
        lambda: outside_write(seeded, "orders", "o2", {"status": "replaced"}),
        lambda: '"replaced"' in el(browser, "#entry-value").get_attribute("textContent"),
        "a new value on the entry page",
    )
    shot(browser, "live-entry")


# --- 3. escaping ----------------------------------------------------------------------------------------------------


def test_a_value_holding_script_is_shown_as_text_never_run(
    browser: Any, ui_server: Callable[..., Server], seeded: str
) -> None:
    server = ui_server(seeded)
    load(browser, server, h("scope", "xss"))
    until(browser, lambda: sorted(row_keys(browser)) == sorted(OTHERS["xss"]), "the entries of xss")
    payload = browser.find_element(By.CSS_SELECTOR, '#entries tr.entry[data-key="payload"] td.value')
    assert payload.text == json.dumps(XSS)  # shown as the JSON string, quotes and all
    assert XSS_KEY in texts(browser, "#entries td.key a")
    assert gone(browser, "#main img") and gone(browser, "#main script")
    shot(browser, "escaping-scope")

    browser.find_element(By.CSS_SELECTOR, '#entries tr.entry[data-key="payload"] td.key a').click()
    until(browser, lambda: el(browser, "#entry-value").text == json.dumps(XSS), "the payload on its entry page")
    load(browser, server, h("entry", "xss", XSS_KEY))
    until(browser, lambda: el(browser, "#entry-value").text, "the entry with an HTML-like key")
    assert el(browser, "#title").text == XSS_KEY
    el(browser, "#history-link").click()
    until(browser, lambda: texts(browser, "#history li.change"), "the history of that key")
    assert gone(browser, "#main img") and gone(browser, "#main script")
    assert browser.execute_script("return window.__pwned") is None
    assert browser.title == "motia-state"


# --- 4. delete and clear behind a confirmation ------------------------------------------------------------------


def dialog_open(driver: Any) -> bool:
    return bool(driver.execute_script("return document.getElementById('confirm').open"))


def test_delete_and_clear_ask_first_and_cancel_keeps_the_state(
    browser: Any, ui_server: Callable[..., Server], seeded: str
) -> None:
    server = ui_server(seeded)
    load(browser, server, h("entry", "orders", "o4"))
    until(browser, lambda: '"cancelled"' in el(browser, "#entry-value").text, "the entry o4")

    el(browser, "#delete-entry").click()
    until(browser, lambda: dialog_open(browser), "the confirmation dialog")
    assert "o4" in el(browser, "#confirm-text").text
    shot(browser, "confirm")
    el(browser, "#confirm-no").click()
    until(browser, lambda: not dialog_open(browser), "the dialog to close")
    assert stored(seeded, "orders", "o4") == ORDERS["o4"]
    assert browser.current_url.endswith(h("entry", "orders", "o4"))

    el(browser, "#delete-entry").click()
    until(browser, lambda: dialog_open(browser), "the confirmation dialog")
    el(browser, "#confirm-yes").click()
    until(browser, lambda: browser.current_url.endswith(h("scope", "orders")), "the scope page after the delete")
    until(browser, lambda: row_keys(browser) and "o4" not in row_keys(browser), "the scope without o4")
    assert stored(seeded, "orders", "o4") is None

    el(browser, "#clear-scope").click()
    until(browser, lambda: dialog_open(browser), "the confirmation dialog")
    assert "orders" in el(browser, "#confirm-text").text
    el(browser, "#confirm-no").click()
    until(browser, lambda: not dialog_open(browser), "the dialog to close")
    assert len(in_store(seeded, lambda s: s.keys("orders"))) == len(ORDERS)  # o1..o8 but o4

    el(browser, "#clear-scope").click()
    until(browser, lambda: dialog_open(browser), "the confirmation dialog")
    el(browser, "#confirm-yes").click()
    until(browser, lambda: row_keys(browser) == [], "an empty scope page")
    until(browser, lambda: "no live entry" in el(browser, "#entries-status").text, "the empty-scope message")
    assert in_store(seeded, lambda s: s.keys("orders")) == []
    assert in_store(seeded, lambda s: s.keys("users")) == ["u1", "u2"]  # only that scope
    shot(browser, "cleared")


# --- 5. new entry -----------------------------------------------------------------------------------------------------


def test_a_new_entry_is_written_with_its_ttl_and_a_bad_ttl_writes_nothing(
    browser: Any, ui_server: Callable[..., Server], seeded: str
) -> None:
    server = ui_server(seeded)
    load(browser, server, h("scope", "users"))
    until(browser, lambda: row_keys(browser) == ["u1", "u2"], "the users")
    el(browser, "#new-entry").click()
    key, value = "u3 new", {"name": "Dee", "roles": ["ops"]}
    fill(el(browser, "#edit-key"), key)
    editor = el(browser, "#edit-value")
    until(browser, lambda: editor.get_attribute("value") == "{}", "the editor's starting value")
    fill(editor, json.dumps(value))
    fill(el(browser, "#edit-ttl"), "-5")
    el(browser, "#edit-save").click()
    until(browser, lambda: el(browser, "#ttl-error").text, "a message next to the TTL")
    assert "ttl" in el(browser, "#ttl-error").text.lower()
    assert el(browser, "#value-error").text == ""
    assert stored(seeded, "users", key) is None
    assert in_store(seeded, lambda s: s.keys("users")) == ["u1", "u2"]
    shot(browser, "new-entry-error")

    fill(el(browser, "#edit-ttl"), "120")
    el(browser, "#edit-save").click()
    until(browser, lambda: browser.current_url.endswith(h("entry", "users", key)), "the new entry's page")
    until(browser, lambda: '"Dee"' in el(browser, "#entry-value").get_attribute("textContent"), "the new value")
    assert re.fullmatch(r"1m \d{1,2}s|2m 0s", el(browser, "#entry-ttl").text), el(browser, "#entry-ttl").text
    assert stored(seeded, "users", key) == value
    left = in_store(seeded, lambda s: s.ttl("users", key))
    assert left is not None and 119 <= left <= 120, left

    # An edit with the TTL left empty keeps the entry's expiry.
    el(browser, "#edit-entry").click()
    editor = el(browser, "#edit-value")
    until(browser, lambda: json.loads(editor.get_attribute("value") or "null") == value, "the editor")
    assert el(browser, "#edit-ttl").get_attribute("value") == ""
    fill(editor, '{"name": "Dee", "roles": []}')
    el(browser, "#edit-save").click()
    until(browser, lambda: browser.current_url.endswith(h("entry", "users", key)), "the entry page again")
    assert stored(seeded, "users", key) == {"name": "Dee", "roles": []}
    kept = in_store(seeded, lambda s: s.ttl("users", key))
    assert kept is not None and left - 10 <= kept <= left, (left, kept)


# --- 6. triggers ----------------------------------------------------------------------------------------------------


def park_one(url: str) -> None:
    """A trigger ``fails`` on scope jobs whose handler raises: one change parked with the error "boom"."""

    async def run() -> None:
        state = StateManager.from_url(url)

        @state.on_change("fails", scope="jobs", max_attempts=1)
        async def fails(change: Change) -> None:
            raise RuntimeError("boom")

        await state.connect()
        store = state.adapter.trigger_store()  # type: ignore[attr-defined]

        async def until_status(check: Callable[[Any], bool]) -> None:
            async with asyncio.timeout(20):
                while not check(await store.status()):  # noqa: ASYNC110 (polling another component's state)
                    await asyncio.sleep(0.05)

        task = asyncio.ensure_future(state.run_triggers())
        try:
            await until_status(lambda s: bool(s and s[0].owners))  # registered: it starts at the current revision
            await state.set("jobs", "job-1", {"task": "send mail"})
            await until_status(lambda s: len(s[0].parked) == 1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await state.close()

    asyncio.run(run())


def trigger_rows(url: str) -> Any:
    run = subprocess.run([*CLI, "--url", url, "triggers"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_triggers_page_shows_the_parked_change_and_retry_requests_it(
    browser: Any, ui_server: Callable[..., Server], seeded: str
) -> None:
    park_one(seeded)
    [row] = trigger_rows(seeded)
    assert row["parked"][0]["retry_requested"] is False
    server = ui_server(seeded)
    load(browser, server, "#/triggers")
    trigger = 'tr.trigger[data-name="fails"]'
    until(browser, lambda: texts(browser, f"{trigger} .parked-count") == ["1"], "the trigger with one parked change")
    assert texts(browser, f"{trigger} .name") == ["fails"]
    assert "boom" in el(browser, ".parked-error").text
    assert "jobs / job-1" in el(browser, ".parked-change a").text
    assert "nav-triggers" in browser.execute_script("return document.querySelector('nav a.current').id")
    shot(browser, "triggers")

    el(browser, f"{trigger} button.retry").click()
    until(browser, lambda: "retry requested" in el(browser, ".parked-change").text, "the page to say retry requested")
    [row] = trigger_rows(seeded)
    assert row["name"] == "fails" and row["parked"][0]["retry_requested"] is True


# --- 7. read-only ---------------------------------------------------------------------------------------------------


POST_FROM_PAGE = """
const done = arguments[arguments.length - 1];
const token = document.querySelector('meta[name="motia-state-token"]').content;
fetch('/api/set', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-Motia-State-Token': token},
  body: JSON.stringify({scope: 'orders', key: 'o1', value: '{"status": "hacked"}'})})
  .then((r) => r.json().then((body) => done([r.status, body])))
  .catch((e) => done(['failed', String(e)]));
"""


def test_read_only_shows_no_write_controls_refuses_writes_and_leaves_the_file_alone(
    browser: Any, ui_server: Callable[..., Server], seeded: str, tmp_path: Path
) -> None:
    park_one(seeded)
    scopes = sorted([*SCOPES, "jobs"])
    db = tmp_path / "state.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    server = ui_server(seeded, "--read-only")
    load(browser, server)
    until(browser, lambda: texts(browser, "#scopes li a.scope-link") == scopes, "the scopes")
    assert el(browser, "#mode").is_displayed() and el(browser, "#mode").text == "read-only"

    load(browser, server, h("scope", "orders"))
    until(browser, lambda: len(row_keys(browser)) == len(ORDERS) + 1, "the entries")
    assert gone(browser, "#new-entry") and gone(browser, "#clear-scope")
    shot(browser, "read-only")
    load(browser, server, h("entry", "orders", "o1"))
    until(browser, lambda: '"Ann"' in el(browser, "#entry-value").get_attribute("textContent"), "the entry")
    assert el(browser, "#history-link").is_displayed()
    assert gone(browser, "#edit-entry") and gone(browser, "#delete-entry")
    load(browser, server, h("history", "orders", "o1"))
    until(browser, lambda: texts(browser, "#history li.change"), "the history")
    load(browser, server, "#/triggers")
    until(browser, lambda: texts(browser, 'tr.trigger[data-name="fails"] .parked-count') == ["1"], "the triggers")
    assert gone(browser, "button.retry")  # a parked change, but no retry here
    load(browser, server, h("edit", "orders", "o1"))  # no edit page here: the scopes list instead
    until(browser, lambda: texts(browser, "#scopes li a.scope-link") == scopes, "the scopes instead of an editor")
    assert gone(browser, "#edit-form")
    load(browser, server, h("new", "orders"))
    until(browser, lambda: texts(browser, "#scopes li a.scope-link") == scopes, "the scopes instead of an editor")

    browser.set_script_timeout(10)
    status, body = browser.execute_async_script(POST_FROM_PAGE)
    assert status == 403, body
    assert "read-only" in body["error"]["message"]
    browser.get("about:blank")  # no page (nor its event stream) left open
    server.stop()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert stored(seeded, "orders", "o1") == ORDERS["o1"]


# --- 8. polling without a change feed ---------------------------------------------------------------------------------


def test_without_a_change_feed_the_page_polls_and_still_sees_outside_writes(
    browser: Any, ui_server: Callable[..., Server], tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path, "?changes=off")
    seed(url)
    server = ui_server(url)
    load(browser, server, h("scope", "orders"))
    until(browser, lambda: "o1" in row_keys(browser), "the entries")
    until(browser, lambda: el(browser, "#live").text == "polling", "#live to say polling")
    started = time.monotonic()
    outside_write(url, "orders", "polled", {"seen": True})
    until(browser, lambda: "polled" in row_keys(browser), "the outside write, by polling", timeout=10)
    took = time.monotonic() - started
    print(f"\npolling: the outside write showed after {took * 1000:.0f} ms")
    assert took < 3.5, took
    shot(browser, "polling")
