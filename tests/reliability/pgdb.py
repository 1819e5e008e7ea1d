"""Extra Postgres databases for this suite on the shared server (always named ``motia_state_e_*``)."""

from __future__ import annotations

import asyncio

from tests.services import PG_ADMIN_URL, require

PREFIX = "motia_state_e_"


def fresh_database(name: str) -> str:
    """Drop and re-create the empty database ``name`` (it must start with ``motia_state_e_``); return its URL."""
    if not name.startswith(PREFIX):
        raise ValueError(f"this suite only manages databases named {PREFIX}*, not {name!r}")
    require("postgres")

    async def recreate() -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
