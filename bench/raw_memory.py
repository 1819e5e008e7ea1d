"""Raw baseline for the memory adapter: a dict of scopes holding JSON text, and the json module."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["RawMemory"]


class RawMemory:
    """The least a dict-backed store with fresh objects on every read can do."""

    kind = "raw"
    name = "dict+json"

    def __init__(self) -> None:
        self.data: dict[str, dict[str, str]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def reset(self) -> None:
        self.data.clear()

    async def get(self, scope: str, key: str) -> Any:
        text = self.data.get(scope, {}).get(key)
        return None if text is None else json.loads(text)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        entries = self.data.setdefault(scope, {})
        old = entries.get(key)
        entries[key] = json.dumps(value)
        return None if old is None else json.loads(old)

    async def update_inc(self, scope: str, key: str) -> Any:
        entries = self.data.setdefault(scope, {})
        text = entries.get(key)
        value = {} if text is None else json.loads(text)
        value["count"] = value.get("count", 0) + 1
        entries[key] = json.dumps(value)
        return value

    async def list(self, scope: str) -> list[Any]:
        entries = self.data.get(scope, {})
        return [json.loads(entries[k]) for k in sorted(entries)]

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        self.data.setdefault(scope, {}).update({k: json.dumps(v) for k, v in mapping.items()})

    async def clear(self, scope: str) -> int:
        return len(self.data.pop(scope, {}))


class MemoryLoader:
    """Bulk load straight into a MemoryAdapter's dict, in its storage format (JSON text, epoch expiry)."""

    def __init__(self, adapter: Any) -> None:
        self.data: dict[str, dict[str, tuple[str, float | None]]] = adapter._data

    async def bulk_load(self, rows: Iterator[tuple[str, str, str, float | None]]) -> None:
        data = self.data
        for scope, key, text, expires in rows:
            entries = data.get(scope)
            if entries is None:
                entries = data[scope] = {}
            entries[key] = (text, expires)

    async def count_rows(self, expired: bool) -> int:
        now = time.time()
        return sum(
            1
            for entries in self.data.values()
            for _, exp in entries.values()
            if (exp is not None and exp <= now) == expired
        )

    async def settle(self) -> None:
        return None
