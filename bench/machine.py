"""What the numbers were measured on: CPU, Python, drivers, server versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["machine_info"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


async def _postgres_version() -> str | None:
    from bench.backends import pg_admin_url

    try:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(pg_admin_url(), timeout=3)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
    except Exception:
        return None


async def _redis_version() -> str | None:
    from bench.backends import redis_url

    try:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url(), socket_connect_timeout=3)
        try:
            info = await client.info("server")
            return str(info.get("redis_version"))
        finally:
            await client.aclose()
    except Exception:
        return None


async def machine_info() -> dict[str, Any]:
    """A dict for the JSON results and BENCHMARKS.md."""
    import sqlite3

    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": await _postgres_version(),
        "redis": await _redis_version(),
        "drivers": {d: _version(d) for d in ("motia-state", "sqlalchemy", "asyncpg", "aiosqlite", "redis", "hiredis")},
    }
