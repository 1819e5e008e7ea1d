"""The "simplest statement" baselines of issue 18: a plain driver doing the least that does the job.

Unlike the ``raw`` subjects (the adapter's own SQL and scripts, no motia-state layer), these use the simplest
equivalent statement a user might write by hand, on the adapter's table / key layout (so one preparation serves
every subject of the row), with none of the adapter's guarantees beyond the one the workload needs:

- SQLite ``set_many1000``: aiosqlite ``executemany`` of a plain upsert (value and ``updated_at`` only; an
  entry's expiry is left as it was) in one ``BEGIN IMMEDIATE … COMMIT``;
- SQLite ``clear100``: ``DELETE FROM motia_state WHERE scope = ?`` and its ``rowcount`` (expired rows not yet
  cleaned up are counted too);
- Redis ``update``: one Lua script that decodes the value with ``cjson``, adds 1 to ``count``, encodes it and
  ``SET``s it (``KEEPTTL``), one ``EVALSHA`` per call (cjson rewrites large integers and some floats: the
  adapter must not, which this baseline does not do for it).

Each subject only serves its rows (``workloads``); the rest of its API (the row's preparation, the refill before
a ``clear``) is the raw subject's, which it extends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final

from bench.raw_redis import RawRedis, _tag
from bench.raw_sqlite import RawSQLite, _dumps, _ts

__all__ = ["PlainRedis", "PlainSQLite"]

_UPSERT: Final = (
    'INSERT INTO motia_state (scope, "key", value, created_at, updated_at) VALUES (?, ?, ?, ?, ?) '
    'ON CONFLICT (scope, "key") DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at'
)
_DELETE: Final = "DELETE FROM motia_state WHERE scope = ?"

_INC: Final = """
local text = redis.call('GET', KEYS[1])
local value = text and cjson.decode(text) or {}
value['count'] = (value['count'] or 0) + 1
text = cjson.encode(value)
redis.call('SET', KEYS[1], text, 'KEEPTTL')
return text
"""


class PlainSQLite(RawSQLite):
    """Its own aiosqlite connection (WAL, ``synchronous=NORMAL``); plain ``executemany`` and ``DELETE``."""

    kind = "plain"
    name = "aiosqlite plain"
    workloads: Final = frozenset({"set_many1000", "clear100"})

    async def reset(self) -> None:
        return None  # the raw subject empties the shared table

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        db = self.c
        now = _ts(time.time())
        rows = [(scope, k, _dumps(v), now, now) for k, v in mapping.items()]
        async with self.tx:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(_UPSERT, rows)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def clear(self, scope: str) -> int:
        async with self.tx:
            cursor = await self.c.execute(_DELETE, (scope,))
        return int(cursor.rowcount)


class PlainRedis(RawRedis):
    """redis-py with hiredis; ``update`` is one server-side script (``Script`` reloads it on NOSCRIPT)."""

    kind = "plain"
    name = "one Lua script"
    workloads: Final = frozenset({"update"})

    async def open(self) -> None:
        await super().open()
        self._inc = self.r.register_script(_INC)

    async def reset(self) -> None:
        return None  # the raw subject flushes the shared db

    async def update_inc(self, scope: str, key: str) -> Any:
        text = await self._inc(keys=[_tag(scope) + ":" + key])
        return json.loads(text)
