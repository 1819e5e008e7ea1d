"""The Redis trigger store (SPEC §11): durable triggers' progress, leases and parked changes, ``tagged`` layout.

Every key of one trigger shares the hash tag ``{__trigger__:<name>}`` (see :mod:`.layout`), and every method
that changes state is one Lua script (:mod:`.scripts`, ``TRIGGER_*``) on those keys: atomic, one slot, so
Cluster-ready. Leases, heartbeats and ``parked_at`` come from the server's ``TIME``, never a client's clock.
The registry of trigger names (``<prefix>__triggers__``) is in another slot: ``register`` adds to it with a
command of its own after the script, and ``status`` reads it outside any script.

A parked change is kept as JSON text built here, its values encoded exactly as entries are (``values.encode``):
Lua never decodes it (cjson would round ``2**70`` and turn ``1.0`` into ``1``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from ...changes import Change, utc_from_epoch
from ...errors import StateBackendError
from ...triggers import Claim, Parked, TriggerStatus
from ...urls import StoreURL
from ...values import decode, encode
from . import scripts
from .connection import Command, Connection
from .layout import Layout, TriggerKeys

__all__ = ["RedisTriggerStore"]

# Triggers read per round trip by status().
_BATCH: Final = 100
# Strings inside a parked record: ASCII escapes, so any text (a lone surrogate in an error message) survives.
_quote = json.JSONEncoder(ensure_ascii=True).encode


def _name(name: str) -> bytes:
    """A trigger name or owner as Redis bytes (a lone surrogate passes through, as in the key)."""
    return name.encode("utf-8", "surrogatepass")


def _lease_ms(lease: float) -> int:
    return max(1, round(lease * 1000))


def _done(raw: bytes | None) -> frozenset[int]:
    return frozenset(int(r) for r in raw.split(b",")) if raw else frozenset()


def _record(change: Change, error: str, attempts: int) -> bytes:
    """A parked change's JSON text, open at its last member ``parked_at`` (the script adds the server time)."""
    fields: tuple[tuple[str, str], ...] = (
        ("revision", str(change.revision)),
        ("event", _quote(change.event)),
        ("scope", _quote(change.scope)),
        ("key", _quote(change.key)),
        ("at", _quote(change.at.isoformat())),
        ("old_value", encode(change.old_value)),
        ("new_value", encode(change.new_value)),
    )
    if change.traceparent is not None:  # kept with the copy: a retried handler still links to the write
        fields += (("traceparent", _quote(change.traceparent)),)
    inner = ",".join(f'"{f}":{v}' for f, v in fields)
    return f'{{"change":{{{inner}}},"error":{_quote(error)},"attempts":{attempts:d},"parked_at":'.encode()


def _parked(name: str, text: bytes, retry: bool) -> Parked:
    """A record written by ``park`` as :class:`Parked` (``decode``: the values come back exact)."""
    record = decode(text)
    c = record["change"]
    change = Change(
        int(c["revision"]),
        c["event"],
        c["scope"],
        c["key"],
        c["old_value"],
        c["new_value"],
        datetime.fromisoformat(c["at"]),
        c.get("traceparent"),  # absent from a record parked before traceparents (or of an untraced write)
    )
    parked_at = utc_from_epoch(int(record["parked_at"]) / 1000)
    return Parked(name, change, str(record["error"]), int(record["attempts"]), parked_at, retry)


class RedisTriggerStore:
    """Trigger progress in Redis (``adapter.trigger_store()`` of the ``tagged`` layout)."""

    def __init__(self, conn: Connection, layout: Layout, url: StoreURL) -> None:
        self._conn = conn
        self._layout = layout
        self._url = url

    def keys(self, name: str) -> TriggerKeys:
        """The Redis keys of trigger ``name`` (one hash tag, one slot)."""
        return self._layout.trigger(name)

    def _unreadable(self, name: str, exc: Exception) -> StateBackendError:
        return StateBackendError(
            f"the progress of trigger {name!r} in Redis is unreadable ({type(exc).__name__}: {exc});"
            " a key under the prefix was changed by hand?",
            backend="redis",
            url=self._url.masked,
        )

    @staticmethod
    def _eval(script: scripts.Script, keys: Sequence[bytes], *args: Any) -> Command:
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    async def register(self, name: str, start: int, partitions: int) -> int:
        k = self.keys(name)
        # The registry is in another slot: its own command, after the script (re-running both is harmless).
        first, _ = await self._conn.run(
            [
                self._eval(scripts.TRIGGER_REGISTER, (k.meta, k.parts), start, partitions),
                ("SADD", self._layout.triggers, _name(name)),
            ],
            idempotent=True,
        )
        return int(first)

    async def acquire(self, name: str, owner: str, lease: float) -> list[Claim]:
        k = self.keys(name)
        flat = await self._conn.one(
            self._eval(scripts.TRIGGER_ACQUIRE, (k.meta, k.parts, k.workers), _name(owner), _lease_ms(lease)),
            idempotent=True,  # the same heartbeat and claims again
        )
        if flat is None:
            raise StateBackendError(
                f"trigger {name!r} is not registered in this store (its keys were removed?)",
                backend="redis",
                url=self._url.masked,
            )
        try:
            return [
                Claim(int(flat[i]), int(flat[i + 1]), _done(flat[i + 2]), surplus=bool(int(flat[i + 3])))
                for i in range(0, len(flat), 4)
            ]
        except (ValueError, TypeError) as exc:
            raise self._unreadable(name, exc) from None

    async def commit(
        self,
        name: str,
        owner: str,
        partition: int,
        position: int,
        done: Sequence[int],
        handled: int,
        skipped: int,
        lease: float,
    ) -> bool:
        k = self.keys(name)
        matched = await self._conn.one(
            self._eval(
                scripts.TRIGGER_COMMIT,
                (k.meta, k.parts),
                _name(owner),
                partition,
                position,
                ",".join(str(r) for r in done),
                handled,
                skipped,
                _lease_ms(lease),
            ),
            idempotent=False,  # the counts would be added twice
        )
        return bool(matched)

    async def release(self, name: str, owner: str, partitions: Sequence[int] | None = None) -> None:
        k = self.keys(name)
        only = () if partitions is None else tuple(int(p) for p in partitions)
        if partitions is not None and not only:
            return
        await self._conn.one(
            self._eval(scripts.TRIGGER_RELEASE, (k.meta, k.parts, k.workers), _name(owner), *only), idempotent=True
        )

    async def park(self, name: str, change: Change, error: str, attempts: int) -> None:
        k = self.keys(name)
        await self._conn.one(
            self._eval(scripts.TRIGGER_PARK, (k.parked, k.retry), change.revision, _record(change, error, attempts)),
            idempotent=True,  # the same record again (parked a moment later)
        )

    async def unpark(self, name: str, revision: int) -> None:
        k = self.keys(name)
        await self._conn.one(self._eval(scripts.TRIGGER_UNPARK, (k.parked, k.retry), revision), idempotent=True)

    async def take_retries(self, name: str, limit: int) -> list[Parked]:
        if limit < 1:
            return []
        k = self.keys(name)
        # Not retried after sending: a lost reply would have taken the flags (the changes stay parked).
        flat = await self._conn.one(
            self._eval(scripts.TRIGGER_TAKE_RETRIES, (k.parked, k.retry), limit), idempotent=False
        )
        try:
            return [_parked(name, flat[i + 1], True) for i in range(0, len(flat), 2)]
        except (ValueError, TypeError, KeyError) as exc:
            raise self._unreadable(name, exc) from None

    async def request_retry(self, name: str) -> int:
        k = self.keys(name)
        return int(
            await self._conn.one(self._eval(scripts.TRIGGER_REQUEST_RETRY, (k.parked, k.retry)), idempotent=True)
        )

    async def status(self) -> list[TriggerStatus]:
        members = await self._conn.one(("SMEMBERS", self._layout.triggers), idempotent=True)
        names = sorted(m.decode("utf-8", "surrogatepass") for m in members)
        out: list[TriggerStatus] = []
        for start in range(0, len(names), _BATCH):
            batch = names[start : start + _BATCH]
            replies = await self._conn.run(
                [self._eval(scripts.TRIGGER_STATUS, self.keys(n)) for n in batch], idempotent=True
            )
            for name, reply in zip(batch, replies, strict=True):
                if reply is None:  # in the registry, its keys gone: nothing to show
                    continue
                try:
                    out.append(self._status(name, reply))
                except (ValueError, TypeError, KeyError) as exc:
                    raise self._unreadable(name, exc) from None
        return out

    @staticmethod
    def _status(name: str, reply: list[Any]) -> TriggerStatus:
        (start, _, handled, skipped), positions, owners, flat, retry = reply
        flagged = set(retry)
        parked = sorted(
            ((int(flat[i]), _parked(name, flat[i + 1], flat[i] in flagged)) for i in range(0, len(flat), 2)),
            key=lambda pair: pair[0],
        )
        return TriggerStatus(
            name,
            int(start),
            tuple(int(p) for p in positions),
            int(handled),
            int(skipped),
            tuple(sorted(o.decode("utf-8", "surrogatepass") for o in owners)),
            tuple(p for _, p in parked),
        )
