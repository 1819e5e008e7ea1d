"""Redis backend (SPEC §7): one JSON string per entry, a per-scope index, native millisecond expiry.

The key layout is in ``layout``, the Lua scripts in ``scripts``, the pool and round trips in
``connection``; this module maps the adapter's hooks onto them. The registry of scopes is in another slot
than the scopes, so it is updated in the same round trip as a write but outside the script, and pruned by
``cleanup`` of scopes whose index is empty. Expiry times in the index come from the server's ``TIME``
inside the same script that sets ``PX``, so the index and Redis's own expiry agree whatever the clients'
clocks say. Needs Redis >= 6.2 (``SET … GET``, ``GETDEL``, ``KEEPTTL``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from ...adapter import Entry, StateAdapter, StateItem
from ...errors import StateBackendError, StateConfigError
from ...ops import Filter, match
from ...urls import StoreURL, parse_url
from ...values import decode, encode
from . import scripts
from .connection import DRIVER_ERRORS, Command, Connection
from .layout import Layout, expiry, ttl_ms

__all__ = ["RedisAdapter", "RedisBase"]

# Lua's unpack() and Redis's argument lists are bounded; batch members this many at a time.
_CHUNK: Final = 1000
# Scopes handled per round trip by cleanup / list_groups / items(None).
_SCOPE_BATCH: Final = 500
# Optimistic update: attempts before giving up (only reached under pathological contention).
_MAX_CAS_ATTEMPTS: Final = 10_000


def _text(member: bytes) -> str:
    return member.decode("utf-8")


class RedisBase(StateAdapter):
    """What both Redis layouts share: the URL, the connection, errors."""

    backend = "redis"

    def __init__(
        self,
        url: str | StoreURL,
        *,
        key_prefix: str = "motia:state:",
        pool_size: int = 50,
        connect_timeout: float = 10.0,
    ) -> None:
        if type(key_prefix) is not str:
            raise StateConfigError(f"key_prefix must be a str, got {type(key_prefix).__name__}")
        self._url = url if isinstance(url, StoreURL) else parse_url(url)
        self._prefix = key_prefix
        self._keys = self._layout(key_prefix)
        self._conn = Connection(self._url, pool_size=pool_size, connect_timeout=connect_timeout)

    def _layout(self, prefix: str) -> Any:
        """The key layout under ``prefix`` (each subclass's own)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url.masked!r}, key_prefix={self._prefix!r})"

    @property
    def pool_size(self) -> int:
        """The most connections the pool opens."""
        return self._conn.pool_size

    @property
    def key_prefix(self) -> str:
        """The prefix of every Redis key this adapter writes."""
        return self._prefix

    def translate_error(self, exc: Exception) -> Exception | None:
        """Driver and socket errors become :class:`StateBackendError` with the masked URL."""
        if isinstance(exc, DRIVER_ERRORS):
            return self._conn.error(exc)
        return None

    async def connect(self) -> None:
        """Check that the server answers (and the credentials are accepted)."""
        await self._conn.ping()

    async def close(self) -> None:
        """Close every pooled connection; idempotent. A later operation opens a new pool."""
        await self._conn.close()

    def entry_key(self, scope: str, key: str) -> str:
        """The Redis key holding ``scope``/``key`` (the layout's)."""
        raise NotImplementedError

    async def ttl(self, scope: str, key: str) -> float | None:
        left = await self._conn.one(("PTTL", self.entry_key(scope, key)), idempotent=True)
        return None if left < 0 else left / 1000

    async def _compare_and_set(
        self,
        scope: str,
        key: str,
        apply: Callable[[Any], Any],
        write: Callable[[bytes | None, str], Awaitable[Any]],
    ) -> tuple[Any, Any]:
        """Optimistic compare-and-swap around ``apply``: exact numbers, atomic across processes.

        The JSON is never decoded in Lua (cjson would lose big integers, float digits and ``{}`` vs ``[]``):
        the text is read, ``apply`` runs here, and ``write(text read, new text)`` (a script) writes only if
        the text is unchanged, answering ``{1}`` or ``{0, current text}``.
        """
        text: bytes | None = await self._conn.one(("GET", self.entry_key(scope, key)), idempotent=True)
        for attempt in range(_MAX_CAS_ATTEMPTS):
            old = None if text is None else decode(text)
            new = apply(old)  # raises before anything is written
            # Not retried blindly: a lost reply could mean the write happened.
            reply = await write(text, encode(new))
            if reply[0] == 1:
                return old, new
            # Lost the race: the reply carries the current text. Back off a little, with jitter, so the
            # contenders spread out instead of colliding again in lockstep.
            text = reply[1] if len(reply) > 1 else None
            await asyncio.sleep(random.random() * min(0.005, 0.0001 * (1 << min(attempt, 6))))
        raise StateBackendError(
            f"update of scope {scope!r} key {key!r} kept conflicting with concurrent writes; retry later",
            backend=self.backend,
            url=self._url.masked,
        )


class RedisAdapter(RedisBase):
    """State in Redis, ``tagged`` layout (Cluster-ready): ``redis.asyncio`` (hiredis parser), one pool.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://…`` for TLS.
    """

    _keys: Layout

    def _layout(self, prefix: str) -> Layout:
        return Layout(prefix)

    def entry_key(self, scope: str, key: str) -> str:
        """The Redis key holding ``scope``/``key``: ``<prefix>{<scope>}:<key>``."""
        return self._keys.entry(scope, key)

    def index_key(self, scope: str) -> str:
        """The Redis key of the scope's index (a sorted set): ``<prefix>{<scope>}``."""
        return self._keys.index(scope)

    async def get(self, scope: str, key: str) -> Any:
        text = await self._conn.one(("GET", self._keys.entry(scope, key)), idempotent=True)
        return None if text is None else decode(text)

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        text, score = await self._conn.run(
            [("GET", self._keys.entry(scope, key)), ("ZSCORE", self._keys.index(scope), key)], idempotent=True
        )
        if text is None:
            return None
        return Entry(decode(text), None if score is None else expiry(score))

    async def set(self, scope: str, key: str, value: Any) -> None:
        await self.set_entry(scope, key, value, None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        tag = self._keys.index(scope)
        old = (
            await self._conn.run(
                [
                    ("EVALSHA", scripts.SET.sha, 2, self._keys.entry(scope, key), tag, encode(value), key, ttl_ms(ttl)),
                    ("SADD", self._keys.registry, scope),
                ],
                idempotent=False,
            )
        )[0]
        return None if old is None else decode(old)

    async def delete(self, scope: str, key: str) -> None:
        await self.delete_entry(scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        tag = self._keys.index(scope)
        old = await self._conn.one(
            ("EVALSHA", scripts.DELETE.sha, 2, self._keys.entry(scope, key), tag, key), idempotent=False
        )
        return None if old is None else decode(old)

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        tag = self._keys.index(scope)
        ekey = self._keys.entry(scope, key)
        new_ttl = ttl_ms(ttl_if_new)

        async def write(text: bytes | None, new_text: str) -> Any:
            if text is None:
                commands: list[Command] = [
                    ("EVALSHA", scripts.CAS.sha, 2, ekey, tag, "0", "", new_text, key, new_ttl),
                    ("SADD", self._keys.registry, scope),
                ]
            else:
                commands = [("EVALSHA", scripts.CAS.sha, 2, ekey, tag, "1", text, new_text, key, new_ttl)]
            return (await self._conn.run(commands, idempotent=False))[0]

        return await self._compare_and_set(scope, key, apply, write)

    # --- scopes --------------------------------------------------------------------------------

    async def clear(self, scope: str) -> int:
        tag = self._keys.index(scope)
        return int(
            await self._conn.one(("EVALSHA", scripts.CLEAR.sha, 1, tag, self._keys.entries(scope)), idempotent=False)
        )

    async def keys(self, scope: str) -> list[str]:
        tag = self._keys.index(scope)
        members = await self._conn.one(
            ("EVALSHA", scripts.KEYS.sha, 1, tag, self._keys.entries(scope)), idempotent=True
        )
        return [_text(m) for m in members]

    async def values(self, scope: str) -> list[Any]:
        tag = self._keys.index(scope)
        members, texts = await self._conn.one(
            ("EVALSHA", scripts.VALUES.sha, 1, tag, self._keys.entries(scope), ""), idempotent=True
        )
        # UTF-8 byte order is code point order, so the raw members sort as the keys do.
        pairs = sorted(zip(members, texts, strict=True))
        return [decode(t) for _, t in pairs if t is not None]

    def _scope_items(self, scope: str, reply: list[Any], filters: Sequence[Filter]) -> list[StateItem]:
        flat, texts = reply
        rows = sorted(zip(flat[0::2], flat[1::2], texts, strict=True))
        out: list[StateItem] = []
        for member, score, text in rows:
            if text is None:
                continue
            value = decode(text)
            if filters and not match(value, filters):
                continue
            out.append(StateItem(scope, _text(member), value, expiry(score)))
        return out

    def _items_command(self, scope: str) -> Command:
        tag = self._keys.index(scope)
        return ("EVALSHA", scripts.VALUES.sha, 1, tag, self._keys.entries(scope), "WITHSCORES")

    async def _items_page(
        self, scope: str, filters: Sequence[Filter], limit: int | None, after: str | None
    ) -> list[StateItem]:
        """One page of ``scope``: keys after ``after`` (if given), values read only for the page's keys.

        The index is scored by expiry, so no lex range serves key order: the scope's live key *names* are
        fetched and sorted here. Memory is therefore bounded by the scope's key names, not by its values,
        which are fetched (with their expiry scores) one chunk at a time in one round trip each.
        """
        tag = self._keys.index(scope)
        members: list[bytes] = await self._conn.one(
            ("EVALSHA", scripts.KEYS.sha, 1, tag, self._keys.entries(scope)), idempotent=True
        )
        # UTF-8 byte order is code point order, so raw members compare and sort as the keys do.
        if after is None:
            names = sorted(members)
        else:
            floor = after.encode("utf-8")
            names = sorted(m for m in members if m > floor)
        del members
        entry_prefix = (self._keys.entries(scope)).encode("utf-8")
        out: list[StateItem] = []
        start = 0
        while start < len(names) and (limit is None or len(out) < limit):
            # Without filters every live key lands in the page, so read no more values than still wanted.
            size = _CHUNK if limit is None or filters else min(_CHUNK, limit - len(out))
            chunk = names[start : start + size]
            start += size
            texts, scores = await self._conn.run(
                [("MGET", *[entry_prefix + m for m in chunk]), ("ZMSCORE", tag, *chunk)], idempotent=True
            )
            for member, text, score in zip(chunk, texts, scores, strict=True):
                if text is None:  # expired or deleted since the names were read
                    continue
                value = decode(text)
                if filters and not match(value, filters):
                    continue
                out.append(StateItem(scope, _text(member), value, None if score is None else expiry(score)))
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def items(
        self, scope: str | None, filters: Sequence[Filter], limit: int | None, *, after: str | None = None
    ) -> list[StateItem]:
        if scope is not None and (after is not None or limit is not None):
            # A page: values are read for the page only, not for the whole scope.
            return await self._items_page(scope, filters, limit, after)
        if scope is not None:
            found = self._scope_items(scope, await self._conn.one(self._items_command(scope), idempotent=True), filters)
            return found if limit is None else found[:limit]
        out: list[StateItem] = []
        scopes = sorted(await self.list_groups())
        for start in range(0, len(scopes), _SCOPE_BATCH):
            batch = scopes[start : start + _SCOPE_BATCH]
            replies = await self._conn.run([self._items_command(s) for s in batch], idempotent=True)
            for s, reply in zip(batch, replies, strict=True):
                out.extend(self._scope_items(s, reply, filters))
                if limit is not None and len(out) >= limit:
                    return out[:limit]
        return out

    async def list_groups(self) -> list[str]:
        (now_s, now_us), scopes = await self._conn.run([("TIME",), ("SMEMBERS", self._keys.registry)], idempotent=True)
        now = int(now_s) * 1000 + int(now_us) // 1000
        ordered = list(scopes)
        live: list[str] = []
        for start in range(0, len(ordered), _SCOPE_BATCH):
            batch = [_text(s) for s in ordered[start : start + _SCOPE_BATCH]]
            counts = await self._conn.run(
                [("ZCOUNT", self._keys.index(s), f"({now}", "+inf") for s in batch], idempotent=True
            )
            live.extend(s for s, n in zip(batch, counts, strict=True) if n > 0)
        return live

    async def cleanup(self) -> int:
        """Prune expired index members (and any string Redis has not dropped yet) and empty scopes.

        Works scope by scope in bounded batches; safe to run from many processes at once (each member is
        pruned by exactly one script, so the counts add up).
        """
        removed = 0
        cursor: int | bytes = 0
        while True:
            cursor, members = await self._conn.one(
                ("SSCAN", self._keys.registry, cursor, "COUNT", _SCOPE_BATCH), idempotent=True
            )
            pending = [_text(m) for m in members]
            empty: list[str] = []
            while pending:
                replies = await self._conn.run(
                    [
                        ("EVALSHA", scripts.CLEANUP.sha, 1, self._keys.index(s), self._keys.entries(s), _CHUNK)
                        for s in pending
                    ],
                    idempotent=False,
                )
                again: list[str] = []
                for s, (pruned, left) in zip(pending, replies, strict=True):
                    removed += int(pruned)
                    if int(pruned) >= _CHUNK:
                        again.append(s)  # maybe more expired members in this scope
                    elif int(left) == 0:
                        empty.append(s)
                pending = again
            if empty:
                await self._forget(empty)
            if int(cursor) == 0:
                return removed

    async def _forget(self, scopes: list[str]) -> None:
        """Drop empty scopes from the registry, then put back any that a concurrent write just filled.

        A writer adds to the index before adding to the registry, so checking the index after the removal
        cannot miss a scope: either the check sees the new member, or the writer's SADD comes later.
        """
        await self._conn.one(("SREM", self._keys.registry, *scopes), idempotent=True)
        exists = await self._conn.run([("EXISTS", self._keys.index(s)) for s in scopes], idempotent=True)
        refill = [s for s, n in zip(scopes, exists, strict=True) if n]
        if refill:
            await self._conn.one(("SADD", self._keys.registry, *refill), idempotent=True)

    # --- batches -------------------------------------------------------------------------------

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        tag = self._keys.entries(scope)
        texts = await self._conn.one(("MGET", *[tag + k for k in keys]), idempotent=True)
        return {k: decode(t) for k, t in zip(keys, texts, strict=True) if t is not None}

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        """All entries in one script call: atomic, one round trip (with the registry update)."""
        tag = self._keys.index(scope)
        args: list[str] = []
        for k, v in mapping.items():
            args.append(k)
            args.append(encode(v))
        await self._conn.run(
            [
                ("EVALSHA", scripts.SET_MANY.sha, 1, tag, self._keys.entries(scope), ttl_ms(ttl), *args),
                ("SADD", self._keys.registry, scope),
            ],
            idempotent=True,  # re-running writes the same values again
        )

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        tag = self._keys.index(scope)
        return int(
            await self._conn.one(
                ("EVALSHA", scripts.DELETE_MANY.sha, 1, tag, self._keys.entries(scope), *keys), idempotent=False
            )
        )
