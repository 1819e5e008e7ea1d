"""motia-state as a benchmark subject, for any URL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from motia_state import StateManager

__all__ = ["INC", "MotiaSubject"]

#: The update every ``update`` row applies.
INC: Final = [{"type": "increment", "path": "count", "by": 1}]


class MotiaSubject:
    """The public API, as a user calls it; ``reset`` goes through the raw baseline's ``reset``."""

    kind = "motia"

    def __init__(self, name: str, url: str, **options: Any) -> None:
        self.name = name
        self.url = url
        self.options = options
        self.state = StateManager.from_url(url, **options)

    async def open(self) -> None:
        await self.state.connect()

    async def close(self) -> None:
        await self.state.close()

    async def reset(self) -> None:
        # The store is emptied by the raw subject of the same adapter (it knows the layout).
        return None

    async def get(self, scope: str, key: str) -> Any:
        return await self.state.get(scope, key)

    async def set(self, scope: str, key: str, value: Any) -> Any:
        return (await self.state.set(scope, key, value)).old_value

    async def update_inc(self, scope: str, key: str) -> Any:
        return (await self.state.update(scope, key, INC)).new_value

    async def list(self, scope: str) -> list[Any]:
        return await self.state.list(scope)

    async def set_many(self, scope: str, mapping: Mapping[str, Any]) -> None:
        await self.state.set_many(scope, mapping)

    async def clear(self, scope: str) -> int:
        return await self.state.clear(scope)
