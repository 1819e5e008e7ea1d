"""The state browser on a store of 100,000 scopes: how long the scopes page and its API take.

For each backend the store is filled with ``--scopes`` scopes of one entry each, then ``motia-state ui``'s
app is served by uvicorn in this process (as the CLI serves it) and timed over real HTTP: the first page
of scopes, a page from the middle (``after`` the 50,000th), the last page, a search, a scope's entries
and a key's history. With Chromium installed, the page itself is also timed in a headless browser: from
navigation until the 50 scope links are on screen.

    python -m bench.ui                  # 100,000 scopes; results/ui.json, table in BENCHMARKS.md
    python -m bench.ui --scopes 10000 --backends sqlite,memory
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import httpx

from bench.backends import ensure_pg_database, pg_url, redis_url
from motia_state import StateManager
from motia_state.config import settings_from_url
from motia_state.ui import Browser, create_app, new_token
from motia_state.ui.server import LOOPBACK_NAMES

RUNS: Final = 7
SEARCH: Final = "777"
FILL_CONCURRENCY: Final = 32


def _urls(tmp: Path) -> dict[str, str]:
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{tmp / 'ui.db'}",
        "postgres": pg_url("motia_state_bench_ui"),
        "redis": redis_url(),
    }


def scope_name(i: int) -> str:
    return f"trace-{i:06d}"


async def _empty(url: str) -> None:
    if url.startswith("postgresql"):
        await ensure_pg_database("motia_state_bench_ui")
        import asyncpg  # type: ignore[import-untyped]

        state = StateManager.from_url(url)
        await state.connect()
        await state.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("TRUNCATE motia_state, motia_state_changes RESTART IDENTITY")
        finally:
            await conn.close()
    elif url.startswith("redis"):
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()


async def _fill(state: StateManager, scopes: int) -> float:
    started = time.perf_counter()
    queue = iter(range(scopes))

    async def writer() -> None:
        for i in queue:
            await state.set(scope_name(i), "booking", {"n": i, "status": "confirmed" if i % 2 else "pending"})

    await asyncio.gather(*(writer() for _ in range(FILL_CONCURRENCY)))
    for i in range(5):  # a key with a history
        await state.update(scope_name(0), "booking", [{"type": "increment", "path": "n", "by": i}])
    return time.perf_counter() - started


async def _timed(client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> tuple[float, Any]:
    samples = []
    body: Any = None
    for _ in range(RUNS):
        started = time.perf_counter()
        response = await client.get(path, params=params)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
        body = response.json()
    return statistics.median(samples) * 1000, body


def _browser_ms(url: str) -> float | None:
    """Median ms from navigation until the scopes page shows its 50 links, in headless Chromium."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        samples = []
        for _ in range(RUNS):
            driver.get("about:blank")
            started = time.perf_counter()
            driver.get(url)
            WebDriverWait(driver, 30, poll_frequency=0.005).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#scopes li a.scope-link")) == 50
            )
            samples.append(time.perf_counter() - started)
        return statistics.median(samples) * 1000
    finally:
        driver.quit()


async def measure_backend(backend: str, url: str, scopes: int) -> dict[str, Any]:
    import uvicorn

    await _empty(url)
    state = StateManager.from_url(url)
    await state.connect()
    fill_s = await _fill(state, scopes)
    browser = Browser(settings_from_url(url, {}), new_token(), allowed_hosts=LOOPBACK_NAMES)
    browser.state = state
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(browser), port=port, log_level="warning", lifespan="on"))
    serving = asyncio.ensure_future(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
        await asyncio.sleep(0.01)
    row: dict[str, Any] = {"backend": backend, "scopes": scopes, "fill_s": round(fill_s, 1)}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            row["first_ms"], first = await _timed(client, "/api/scopes", {})
            assert first["scopes"][0] == scope_name(0) and len(first["scopes"]) == 50
            middle_after = scope_name(scopes // 2)
            row["middle_ms"], middle = await _timed(client, "/api/scopes", {"after": middle_after})
            assert middle["scopes"][0] == scope_name(scopes // 2 + 1)
            row["last_ms"], last = await _timed(client, "/api/scopes", {"after": scope_name(scopes - 20)})
            assert last["next"] is None and len(last["scopes"]) == 19
            row["search_ms"], found = await _timed(client, "/api/scopes", {"search": SEARCH})
            assert all(SEARCH in s for s in found["scopes"]) and found["scopes"]
            row["entries_ms"], _ = await _timed(client, "/api/entries", {"scope": scope_name(scopes // 3)})
            row["history_ms"], history = await _timed(
                client, "/api/history", {"scope": scope_name(0), "key": "booking"}
            )
            assert len(history["changes"]) == 6
        loop = asyncio.get_running_loop()
        row["page_ms"] = await loop.run_in_executor(None, _browser_ms, f"http://127.0.0.1:{port}/")
    finally:
        server.should_exit = True
        browser.end_streams()
        await serving
        await state.close()
    return row


def to_markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| backend | scopes | first page (ms) | middle page (ms) | last page (ms) | search (ms) | a scope's entries (ms)"
        " | a key's history (ms) | page in Chromium (ms) |"
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        page = "" if r["page_ms"] is None else f"{r['page_ms']:.0f}"
        lines.append(
            f"| {r['backend']} | {r['scopes']:,} | {r['first_ms']:.1f} | {r['middle_ms']:.1f} | {r['last_ms']:.1f} |"
            f" {r['search_ms']:.1f} | {r['entries_ms']:.1f} | {r['history_ms']:.1f} | {page} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__)
    parser.add_argument("--scopes", type=int, default=100_000, help="scopes in the store (100,000)")
    parser.add_argument("--backends", default="memory,sqlite,postgres,redis")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ui.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="motia-state-bench-ui-") as folder:
        urls = _urls(Path(folder))
        for backend in args.backends.split(","):
            row = asyncio.run(measure_backend(backend, urls[backend], args.scopes))
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    args.out.write_text(json.dumps({"rows": rows, "runs": RUNS, "search": SEARCH}, indent=2) + "\n")
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
