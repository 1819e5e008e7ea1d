"""Redis backend, ``motia`` layout: the keys of Motia's own Node Redis state adapter, shared with a Motia app.

Each entry is one string ``<prefix><scope>:<key>`` holding the JSON text, with Redis's own ``PX`` expiry, and
nothing else lives under the prefix (no index, no registry): a running Motia app lists exactly the trace ids
written on either side. The price: listing a scope, ``list_groups`` and ``clear`` scan the prefix (``SCAN
MATCH``, glob characters escaped), so they cost what the prefix holds; the layout is not Cluster-ready (a
scope's keys are in many slots); ``cleanup()`` has nothing to do (Redis drops expired strings itself) and
reports 0; writes made by the Motia app are not in motia-state's change feed. Needs Redis >= 7.0 (the
absolute expiry of an entry is read with ``PEXPIRETIME``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from ...adapter import Entry, StateItem
from ...changes import Change
from ...errors import StateConfigError
from ...ops import Filter, match
from ...urls import StoreURL
from ...values import decode, encode
from . import scripts
from .adapter import RedisBase
from .layout import MotiaLayout, ttl_ms

__all__ = ["MotiaLayoutAdapter"]

# Why watch() fails here: the change feed would need keys under the prefix, which Motia would list as trace ids.
_NO_CHANGES: Final = (
    "the Redis layout 'motia' records no changes yet (nothing but entries may live under its prefix, where the"
    " Motia app lists its trace ids), so watch(), revision() and on_change() are not available on it; use"
    " layout: tagged (the default) for the change feed"
)

# Keys per MGET / DEL / script call.
_CHUNK: Final = 1000
# COUNT hint of each SCAN step.
_SCAN_COUNT: Final = 1000


def _expires_at(expire_ms: int) -> datetime | None:
    """A PEXPIRETIME reply (absolute epoch ms; -1 no expiry, -2 no key) as an aware UTC datetime."""
    return None if expire_ms < 0 else datetime.fromtimestamp(expire_ms / 1000, UTC)


class MotiaLayoutAdapter(RedisBase):
    """State in Redis in Motia's own layout (``layout: motia``), readable and writable by a Motia app."""

    _keys: MotiaLayout

    def __init__(self, url: str | StoreURL, **options: Any) -> None:
        super().__init__(url, **options)
        if self.cluster:
            # Listing scans the prefix, which on a Cluster is spread over every master, and Motia's own
            # adapter has no hash tags: its keys of one trace id are not in one slot.
            raise StateConfigError(
                f"{self._url.masked!r}: layout: motia is not Cluster-ready (Motia's keys have no hash tag, and"
                " listing scans the whole prefix); on a Redis Cluster use the default layout (tagged)"
            )

    def _layout(self, prefix: str) -> MotiaLayout:
        return MotiaLayout(prefix)

    def entry_key(self, scope: str, key: str) -> str:
        """The Redis key holding ``scope``/``key``: ``<prefix><scope>:<key>``."""
        return self._keys.entry(scope, key)

    #: The manager refuses watch()/revision() with this reason (a StateConfigError).
    changes_unsupported: Final = _NO_CHANGES  # type: ignore[misc]

    # --- the change feed ------------------------------------------------------------------------------

    async def revision(self, scope: str | None) -> int:
        raise NotImplementedError(_NO_CHANGES)

    async def changes_after(
        self, scope: str | None, key: str | None, after: int, limit: int, wait: float
    ) -> list[Change]:
        raise NotImplementedError(_NO_CHANGES)

    async def key_history(self, scope: str, key: str, before: int | None, limit: int) -> list[Change]:
        raise NotImplementedError(_NO_CHANGES)

    # --- scanning -------------------------------------------------------------------------------------

    async def _scan(self, pattern: str) -> set[bytes]:
        """Every key matching ``pattern`` (SCAN may report a key twice: a set)."""
        found: set[bytes] = set()
        cursor: bytes | int = 0
        while True:
            cursor, keys = await self._conn.one(
                ("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT), idempotent=True
            )
            found.update(keys)
            if int(cursor) == 0:
                return found

    async def _scope_keys(self, scope: str) -> list[str]:
        """The keys of ``scope``, sorted by code point (UTF-8 byte order is code point order)."""
        start = len(self._keys.entries(scope).encode("utf-8"))
        return [k[start:].decode("utf-8") for k in sorted(await self._scan(self._keys.scope_pattern(scope)))]

    # --- single entries --------------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> Any:
        text = await self._conn.one(("GET", self._keys.entry(scope, key)), idempotent=True)
        return None if text is None else decode(text)

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        name = self._keys.entry(scope, key)
        text, expire = await self._conn.run([("GET", name), ("PEXPIRETIME", name)], idempotent=True)
        return None if text is None else Entry(decode(text), _expires_at(int(expire)))

    async def set(self, scope: str, key: str, value: Any) -> None:
        await self.set_entry(scope, key, value, None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        ekey = self._keys.entry(scope, key)
        text = encode(value)
        command: tuple[Any, ...] = ("SET", ekey, text)
        if ttl is not None:
            command += ("PX", ttl_ms(ttl))
        old = await self._conn.one((*command, "GET"), idempotent=False)
        self._remember(ekey, text)
        return None if old is None else decode(old)

    async def delete(self, scope: str, key: str) -> None:
        await self.delete_entry(scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        ekey = self._keys.entry(scope, key)
        if self._known:
            self._known.pop(ekey, None)
        old = await self._conn.one(("GETDEL", ekey), idempotent=False)
        return None if old is None else decode(old)

    async def _chain(
        self,
        scope: str,
        key: str,
        ekey: str,
        text: str | bytes | None,
        steps: list[tuple[str, str | None]],
        ttl_if_new: float | None,
    ) -> Any:
        # This layout records no changes: the queued updates' result is one write of the last text.
        present = ("0", "") if text is None else ("1", text)
        command = ("EVALSHA", scripts.MOTIA_CAS.sha, 1, ekey, *present, steps[-1][0], ttl_ms(ttl_if_new))
        return await self._conn.one(command, idempotent=False)

    # --- scopes ---------------------------------------------------------------------------------------

    async def clear(self, scope: str) -> int:
        names = sorted(await self._scan(self._keys.scope_pattern(scope)))
        removed = 0
        for start in range(0, len(names), _CHUNK):
            removed += int(await self._conn.one(("DEL", *names[start : start + _CHUNK]), idempotent=False))
        return removed

    async def cleanup(self) -> int:
        return 0  # Redis removes expired strings itself; this layout keeps nothing else to prune

    async def keys(self, scope: str) -> list[str]:
        return await self._scope_keys(scope)

    async def list_groups(self) -> list[str]:
        scopes = {parts[0] for k in await self._scan(self._keys.all_pattern()) if (parts := self._keys.split(k))}
        return list(scopes)

    async def values(self, scope: str) -> list[Any]:
        return [item.value for item in await self.items(scope, (), None)]

    async def _read(
        self, scope: str, names: list[str], filters: Sequence[Filter], limit: int | None
    ) -> list[StateItem]:
        out: list[StateItem] = []
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            entries = [self._keys.entry(scope, k) for k in chunk]
            texts, *expires = await self._conn.run(
                [("MGET", *entries), *(("PEXPIRETIME", e) for e in entries)], idempotent=True
            )
            for key, text, expire in zip(chunk, texts, expires, strict=True):
                if text is None:  # expired or deleted since the scan
                    continue
                value = decode(text)
                if filters and not match(value, filters):
                    continue
                out.append(StateItem(scope, key, value, _expires_at(int(expire))))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        scopes = [scope] if scope is not None else sorted(await self.list_groups())
        out: list[StateItem] = []
        for s in scopes:
            names = await self._scope_keys(s)
            if after is not None:
                names = [k for k in names if k > after]
            out.extend(await self._read(s, names, filters, None if limit is None else limit - len(out)))
            if limit is not None and len(out) >= limit:
                break
        return out

    # --- batches --------------------------------------------------------------------------------------

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        texts = await self._conn.one(("MGET", *[self._keys.entry(scope, k) for k in keys]), idempotent=True)
        return {k: decode(t) for k, t in zip(keys, texts, strict=True) if t is not None}

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        """Every entry in one script call: all or nothing, one round trip."""
        names = [self._keys.entry(scope, k) for k in mapping]
        texts = [encode(v) for v in mapping.values()]
        await self._conn.one(
            ("EVALSHA", scripts.MOTIA_SET_MANY.sha, len(names), *names, ttl_ms(ttl), *texts), idempotent=True
        )

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        names = [self._keys.entry(scope, k) for k in keys]
        removed = 0
        for start in range(0, len(names), _CHUNK):
            removed += int(await self._conn.one(("DEL", *names[start : start + _CHUNK]), idempotent=False))
        return removed
