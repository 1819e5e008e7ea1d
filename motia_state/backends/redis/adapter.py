"""Redis backend (SPEC §7): one JSON string per entry, a per-scope index, native millisecond expiry.

The key layout is in ``layout``, the Lua scripts in ``scripts``, the pool and round trips in
``connection``; this module maps the adapter's hooks onto them. The registry of scopes is in another slot
than the scopes, so it is updated in the same round trip as a write but outside the script, and pruned by
``cleanup`` of scopes whose index is empty. Expiry times in the index come from the server's ``TIME``
inside the same script that sets ``PX``, so the index and Redis's own expiry agree whatever the clients'
clocks say. Needs Redis >= 6.2 (``SET … GET``, ``GETDEL``, ``KEEPTTL``).

The change feed (SPEC §10): every writing script also records its changes (``scripts.recorder``): a revision
from one counter, the change on the scope's stream (in its slot) and on the global stream. Redis drops expired
strings by itself, so an ``expired`` change is recorded where the index shows one: ``cleanup()`` pruning an
expired member, or ``delete``/``delete_many``/``clear`` meeting a member whose string is gone (its old value
then is None; Redis no longer has it). A write over an expired entry records only ``created``. A watch reads
with XRANGE and waits with ``XREAD BLOCK`` on the server, on a pool of its own; ``cleanup()`` compacts.
The counter, the global stream and the stream registry are in other slots than the scopes. A traced write's
changes carry its traceparent as one more field, ``p`` (``scripts.recorder``); an untraced write sends nothing more.

On a Redis Cluster (``redis+cluster://``) no script may touch two slots, so the feed is kept per scope: the
scope's stream alone, written by the same script as the entries, with the stream entry's own ID as the revision
(``ms * 1,000,000 + sequence``, increasing per scope; see ``scripts.recorder``). There is no order of all
scopes' changes, so ``watch()`` of every scope, ``revision()`` without a scope and triggers without ``scope=``
raise :class:`StateConfigError` there. The registries (scopes, streams, triggers) are written by commands of
their own next to the scripts, never inside one; compaction moves a store-wide time floor, then trims each
stream to it.

Durable triggers (SPEC §11) keep their progress through ``trigger_store()`` (:mod:`.triggers`), each trigger's
keys in one slot of their own.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Final

from ...adapter import Entry, StateAdapter, StateItem, server_attributes
from ...changes import DEFAULT_RETENTION, Change, log_compaction
from ...errors import ChangesCompactedError, StateBackendError, StateConfigError
from ...ops import Filter, match
from ...telemetry import OPERATION
from ...urls import StoreURL, parse_url
from ...values import decode, encode
from . import scripts
from .connection import DRIVER_ERRORS, Command, Connection
from .layout import Layout, expiry, ttl_ms

if TYPE_CHECKING:
    from .triggers import RedisTriggerStore

__all__ = ["RedisAdapter", "RedisBase"]

# Lua's unpack() and Redis's argument lists are bounded; batch members this many at a time.
_CHUNK: Final = 1000
# Scopes handled per round trip by cleanup / list_groups / items(None).
_SCOPE_BATCH: Final = 500
# Optimistic update: attempts before giving up (only reached under pathological contention).
_MAX_CAS_ATTEMPTS: Final = 10_000
#: Why a Cluster store refuses what needs every scope's changes in one order.
CLUSTER_ALL_SCOPES: Final = (
    "on a Redis Cluster the change feed is kept per scope (each scope's changes live in its own slot, and no"
    " script may write two slots), so there is no single order of every scope's changes: watch one scope"
    " (state.watch(scope)), ask state.revision(scope), and give triggers a scope= "
)


# Updates of one key coalesced into one compare-and-swap, at most (a script's argument list stays small).
_LANE_BATCH: Final = 256
# The remembered texts of updated keys: how many keys, and the longest text kept.
_KNOWN_KEYS: Final = 4096
_KNOWN_TEXT: Final = 4096


class _Job:
    """One ``update`` call: its function, TTL for a new entry, traceparent, and (when queued) its future."""

    __slots__ = ("apply", "future", "trace", "ttl_if_new")

    def __init__(self, apply: Callable[[Any], Any], ttl_if_new: float | None, trace: str | None) -> None:
        self.apply = apply
        self.ttl_if_new = ttl_if_new
        self.trace = trace
        self.future: asyncio.Future[tuple[Any, Any]] | None = None


def _text(member: bytes) -> str:
    return member.decode("utf-8")


def _revision(entry_id: bytes) -> int:
    """The revision of a change stream entry ID ``<revision>-0``."""
    return int(entry_id.partition(b"-")[0])


def _server_id(revision: int) -> str:
    """The stream entry ID of a revision on one server."""
    return f"{revision}-0"


def _cluster_revision(entry_id: bytes) -> int:
    """The revision of a Cluster change stream entry ID ``<ms>-<seq>`` (see ``scripts.recorder``)."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms) * scripts.RECORDING_CLUSTER + int(seq)


def _cluster_id(revision: int) -> str:
    """The stream entry ID of a Cluster revision."""
    ms, seq = divmod(revision, scripts.RECORDING_CLUSTER)
    return f"{ms}-{seq}"


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
        changes: bool = True,
        changes_retention: float = DEFAULT_RETENTION,
    ) -> None:
        if type(key_prefix) is not str:
            raise StateConfigError(f"key_prefix must be a str, got {type(key_prefix).__name__}")
        self._url = url if isinstance(url, StoreURL) else parse_url(url)
        self._prefix = key_prefix
        self._keys = self._layout(key_prefix)
        self._conn = Connection(self._url, pool_size=pool_size, connect_timeout=connect_timeout)
        # Watches block in XREAD for seconds: on a pool of their own, so they never take the connections
        # (and pool slots) that reads and writes need. Its connections open on the first blocking read.
        self._blocking = Connection(self._url, pool_size=pool_size, connect_timeout=connect_timeout, blocking=True)
        #: A Redis Cluster: the change feed is per scope (see the module docstring).
        self.cluster = self._conn.cluster
        self.revisions_per_scope = self.cluster
        # A change stream entry ID <-> its revision (see the module docstring), chosen once for the topology.
        self._revision_of: Callable[[bytes], int] = _cluster_revision if self.cluster else _revision
        self._stream_id: Callable[[int], str] = _cluster_id if self.cluster else _server_id
        self.all_scopes_unsupported = CLUSTER_ALL_SCOPES if self.cluster else None
        self.changes_off = not changes
        self._retention_ms = max(1, round(changes_retention * 1000))
        # update_entry's lanes (updates of one key waiting for the one in flight) and remembered texts.
        self._lanes: dict[str, list[_Job]] = {}
        self._lanes_loop: asyncio.AbstractEventLoop | None = None
        self._known: OrderedDict[str, str] = OrderedDict()
        self._drains: set[asyncio.Task[None]] = set()

    def _layout(self, prefix: str) -> Any:
        """The key layout under ``prefix`` (each subclass's own)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url.masked!r}, key_prefix={self._prefix!r})"

    def telemetry_attributes(self) -> dict[str, str | int]:
        """``redis``, the key prefix (the store's "collection"), the database number, the first host."""
        database = self._url.path.lstrip("/") or dict(self._url.query).get("db") or "0"
        return server_attributes(self._url, "redis", self._prefix, None if self.cluster else database, 6379)

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
        await self._blocking.close()

    def entry_key(self, scope: str, key: str) -> str:
        """The Redis key holding ``scope``/``key`` (the layout's)."""
        raise NotImplementedError

    async def ttl(self, scope: str, key: str) -> float | None:
        left = await self._conn.one(("PTTL", self.entry_key(scope, key)), idempotent=True)
        return None if left < 0 else left / 1000

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        """Optimistic compare-and-swap around ``apply``: exact numbers, atomic across processes.

        The JSON is never decoded in Lua (cjson would lose big integers, float digits and ``{}`` vs ``[]``):
        ``apply`` runs here on the text last known, and a script writes only if the text is unchanged.

        Two things keep it to one round trip and keep a hot key fast. The text this process last wrote by an
        update is remembered (``_known``), so the next update of the key starts from it without a ``GET``; a
        stale one costs one failed compare, whose reply carries the current text. And updates of one key that
        arrive while one is in flight wait in its lane and are then applied one after the other, in arrival
        order, to the text the first one left, and written by one compare-and-swap (``_chain``): each caller
        still gets its own old and new value and its own change, and the processes that contend for the key
        are only as many as there are processes, not tasks.
        """
        ekey = self.entry_key(scope, key)
        job = _Job(apply, ttl_if_new, OPERATION.get())
        loop = asyncio.get_running_loop()
        if self._lanes_loop is not loop:  # lanes (and their futures) belong to one event loop
            self._lanes, self._lanes_loop = {}, loop
        lanes = self._lanes
        lane = lanes.get(ekey)
        if lane is not None:
            job.future = loop.create_future()
            lane.append(job)
            return await job.future
        lanes[ekey] = lane = []
        try:
            outcome = (await self._update_batch(scope, key, ekey, [job]))[0]
        finally:
            if lane:
                # Run by a task of its own, so that neither this caller's return nor its cancellation waits
                # for (or stops) the updates queued behind it.
                task = loop.create_task(self._drain(scope, key, ekey, lanes, lane))
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)
            elif lanes.get(ekey) is lane:
                del lanes[ekey]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _drain(self, scope: str, key: str, ekey: str, lanes: dict[str, list[_Job]], lane: list[_Job]) -> None:
        """Write the updates queued in ``lane``, a batch at a time, until none is left."""
        try:
            while lane:
                batch = [job for job in lane[:_LANE_BATCH] if job.future is not None and not job.future.done()]
                del lane[:_LANE_BATCH]
                if not batch:
                    continue
                try:
                    outcomes = await self._update_batch(scope, key, ekey, batch)
                except BaseException as exc:
                    for job in batch:
                        if job.future is not None and not job.future.done():
                            job.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for job, outcome in zip(batch, outcomes, strict=True):
                    if job.future is None or job.future.done():
                        continue  # its caller was cancelled after the batch was taken: the update stands
                    if isinstance(outcome, BaseException):
                        job.future.set_exception(outcome)
                    else:
                        job.future.set_result(outcome)
        finally:
            if lanes.get(ekey) is lane:
                del lanes[ekey]
            for job in lane:  # only left when this task itself was cancelled (the loop is closing)
                if job.future is not None and not job.future.done():
                    job.future.cancel()

    async def _update_batch(
        self, scope: str, key: str, ekey: str, batch: list[_Job]
    ) -> list[tuple[Any, Any] | Exception]:
        """Apply ``batch`` in order and write the result by one compare-and-swap; each job's (old, new) or the
        error its ``apply`` raised. Retries (with jittered backoff) while other processes win the race."""
        text: str | bytes | None = self._known.get(ekey)
        verified = text is None
        if verified:
            text = await self._conn.one(("GET", ekey), idempotent=True)
        for attempt in range(_MAX_CAS_ATTEMPTS):
            outcomes: list[tuple[Any, Any] | Exception] = []
            steps: list[tuple[str, str | None]] = []
            cur = text
            ttl_if_new: float | None = None
            for job in batch:
                old = None if cur is None else decode(cur)
                try:
                    new = job.apply(old)  # raises before anything is written
                except Exception as exc:
                    if not verified:
                        break  # maybe only because the remembered text is stale: read, then decide
                    outcomes.append(exc)
                    continue
                new_text = encode(new)
                if cur is None and text is None:
                    ttl_if_new = job.ttl_if_new
                steps.append((new_text, job.trace))
                outcomes.append((old, new))
                cur = new_text
            else:
                if not steps:
                    return outcomes  # every update refused, on the current text: nothing to write
                # Not retried blindly: a lost reply could mean the write happened.
                reply = await self._chain(scope, key, ekey, text, steps, ttl_if_new)
                if reply[0] == 1:
                    self._remember(ekey, steps[-1][0])
                    return outcomes
                # Lost the race: the reply carries the current text.
                self._known.pop(ekey, None)
                lost_to_another = verified
                text = reply[1] if len(reply) > 1 else None
                verified = True
                if lost_to_another:
                    # Back off a little, with jitter, so the contending processes spread out instead of
                    # colliding again in lockstep. A stale remembered text is retried at once.
                    await asyncio.sleep(random.random() * min(0.005, 0.0001 * (1 << min(attempt, 6))))
                continue
            self._known.pop(ekey, None)
            text = await self._conn.one(("GET", ekey), idempotent=True)
            verified = True
        raise StateBackendError(
            f"update of scope {scope!r} key {key!r} kept conflicting with concurrent writes; retry later",
            backend=self.backend,
            url=self._url.masked,
        )

    def _remember(self, ekey: str, text: str) -> None:
        """Keep ``text`` as the key's current text, as this process last wrote it (by ``set`` or ``update``):
        small texts only, for a bounded number of keys (the least recently written go first)."""
        known = self._known
        if len(text) > _KNOWN_TEXT:
            known.pop(ekey, None)
            return
        known[ekey] = text
        known.move_to_end(ekey)
        if len(known) > _KNOWN_KEYS:
            known.popitem(last=False)

    async def _chain(
        self,
        scope: str,
        key: str,
        ekey: str,
        text: str | bytes | None,
        steps: list[tuple[str, str | None]],
        ttl_if_new: float | None,
    ) -> Any:
        """Write the last of ``steps`` (new text, traceparent) if the entry's text is still ``text``
        (None: absent): ``{1}``, or ``{0, current text}``. Each layout's own script."""
        raise NotImplementedError


class RedisAdapter(RedisBase):
    """State in Redis, ``tagged`` layout (Cluster-ready): ``redis.asyncio`` (hiredis parser), one pool.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://…`` for TLS.
    """

    _keys: Layout
    _trigger_store: RedisTriggerStore | None = None

    def _layout(self, prefix: str) -> Layout:
        return Layout(prefix)

    def trigger_store(self) -> RedisTriggerStore:
        """Where durable triggers keep their progress (SPEC §11): this store's Redis, one per adapter."""
        store = self._trigger_store
        if store is None:
            from .triggers import RedisTriggerStore  # imported when triggers run, not by every CLI call

            store = self._trigger_store = RedisTriggerStore(self._conn, self._keys, self._url)
        return store

    def entry_key(self, scope: str, key: str) -> str:
        """The Redis key holding ``scope``/``key``: ``<prefix>{<scope>}:<key>``."""
        return self._keys.entry(scope, key)

    def index_key(self, scope: str) -> str:
        """The Redis key of the scope's index (a sorted set): ``<prefix>{<scope>}``."""
        return self._keys.index(scope)

    def stream_key(self, scope: str | None) -> str:
        """The change stream of ``scope`` (``<prefix>{<scope>}#changes``), or of every scope (None)."""
        return self._keys.changes if scope is None else self._keys.stream(scope)

    def _script(
        self,
        script: scripts.Script,
        keys: tuple[Any, ...],
        args: tuple[Any, ...],
        scope: str,
        *rest: Any,
        trace: str | EllipsisType | None = ...,
    ) -> Command:
        """EVALSHA of a writing script: its own keys and args, then the change feed's (scripts.recorder),
        then ``rest``. With ``changes: off`` it gets no extra keys and a blank flag: it records nothing.

        Built in the caller's task, so it reads the calling operation's traceparent (``telemetry.OPERATION``)
        unless given ``trace``: when set, the recorder is told so and gets it as one more argument, to keep with
        every change.
        """
        if self.cluster:
            script = scripts.CLUSTER_OF[script]
        if self.changes_off:
            return ("EVALSHA", script.sha, len(keys), *keys, *args, "", "", "", *rest)
        all_keys, extra_args = self._keys.recording(scope)
        # On a Cluster only the scope stream, in the scope's slot.
        extra_keys: tuple[str, ...] = all_keys[1:2] if self.cluster else all_keys
        n = len(keys) + len(extra_keys)
        if trace is ...:
            trace = OPERATION.get()
        if trace:
            _, scope_arg, tag = extra_args
            return ("EVALSHA", script.sha, n, *keys, *extra_keys, *args, "t", scope_arg, tag, trace, *rest)
        return ("EVALSHA", script.sha, n, *keys, *extra_keys, *args, *extra_args, *rest)

    def _registered(self, scope: str, *commands: Command) -> list[Command]:
        """``commands`` and, on a Cluster while recording, the scope stream's registry entry (outside the script:
        another slot). Score 0 until the next compaction sets it to the stream's first change (``_compact``)."""
        if self.cluster and not self.changes_off:
            return [*commands, ("ZADD", self._keys.changes_scopes, "NX", 0, self._keys.tag(scope))]
        return list(commands)

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
        ekey = self._keys.entry(scope, key)
        text = encode(value)
        old = (
            await self._conn.run(
                self._registered(
                    scope,
                    self._script(scripts.SET, (ekey, tag), (text, key, ttl_ms(ttl)), scope),
                    ("SADD", self._keys.registry, scope),
                ),
                idempotent=False,
            )
        )[0]
        self._remember(ekey, text)
        return None if old is None else decode(old)

    async def delete(self, scope: str, key: str) -> None:
        await self.delete_entry(scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        tag = self._keys.index(scope)
        ekey = self._keys.entry(scope, key)
        if self._known:
            self._known.pop(ekey, None)
        old = (
            await self._conn.run(
                self._registered(scope, self._script(scripts.DELETE, (ekey, tag), (key,), scope)),
                idempotent=False,
            )
        )[0]
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
        tag = self._keys.index(scope)
        present = ("0", "") if text is None else ("1", text)
        args = (*present, steps[-1][0], key, ttl_ms(ttl_if_new))
        if len(steps) == 1 or self.changes_off:
            command = self._script(scripts.CAS, (ekey, tag), args, scope, trace=steps[-1][1])
        else:
            tail: list[str] = [str(len(steps))]
            for i, (new_text, trace) in enumerate(steps, 1):
                tail += ("" if i == len(steps) else new_text, trace or "")
            command = self._script(scripts.CHAIN, (ekey, tag), args, scope, *tail, trace=None)
        if text is None:
            commands = self._registered(scope, command, ("SADD", self._keys.registry, scope))
        else:
            commands = self._registered(scope, command)
        return (await self._conn.run(commands, idempotent=False))[0]

    # --- scopes --------------------------------------------------------------------------------

    async def clear(self, scope: str) -> int:
        tag = self._keys.index(scope)
        return int(
            (
                await self._conn.run(
                    self._registered(
                        scope,
                        self._script(scripts.CLEAR, (tag,), (self._keys.entries(scope),), scope),
                    ),
                    idempotent=False,
                )
            )[0]
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

    async def _registry(self) -> tuple[int, list[bytes]]:
        """The server's time (ms) and every member of the scope registry, in one round trip."""
        (now_s, now_us), scopes = await self._conn.run([("TIME",), ("SMEMBERS", self._keys.registry)], idempotent=True)
        return int(now_s) * 1000 + int(now_us) // 1000, list(scopes)

    async def _live_among(self, scopes: list[str], now: int) -> list[str]:
        """Those of ``scopes`` whose index has a member expiring after ``now`` (or never), in one round trip."""
        counts = await self._conn.run(
            [("ZCOUNT", self._keys.index(s), f"({now}", "+inf") for s in scopes], idempotent=True
        )
        return [s for s, n in zip(scopes, counts, strict=True) if n > 0]

    async def list_groups(self) -> list[str]:
        now, ordered = await self._registry()
        live: list[str] = []
        for start in range(0, len(ordered), _SCOPE_BATCH):
            live.extend(await self._live_among([_text(s) for s in ordered[start : start + _SCOPE_BATCH]], now))
        return live

    async def scopes_page(self, after: str | None, limit: int, search: str | None) -> list[str]:
        """The registry (one set) read whole, the candidates after ``after`` containing ``search`` picked here, and
        only as many of them checked for a live member (ZCOUNT above now, as ``list_groups``) as the page needs.

        UTF-8 byte order is code point order and a UTF-8 needle is found in the bytes exactly where it is in the
        text, so the raw members are compared, searched and sorted without decoding them all.
        """
        now, candidates = await self._registry()
        if after is not None:
            floor = after.encode("utf-8")
            candidates = [m for m in candidates if m > floor]
        if search is not None:
            needle = search.encode("utf-8")
            candidates = [m for m in candidates if needle in m]
        # Usually every scope is live, so the page is the ``limit`` smallest: a heap pass, not a sort of them all.
        # Expired-only scopes among those (the registry keeps them until cleanup) make the rest be sorted once.
        ordered = heapq.nsmallest(limit, candidates) if len(candidates) > limit else sorted(candidates)
        partial = len(ordered) < len(candidates)
        out: list[str] = []
        start = 0
        while len(out) < limit:
            if start >= len(ordered):
                if not partial:
                    break
                ordered = sorted(m for m in candidates if m > ordered[-1])
                start, partial = 0, False
                continue
            batch = [_text(m) for m in ordered[start : start + min(_SCOPE_BATCH, max(limit - len(out), 16))]]
            start += len(batch)
            out.extend(await self._live_among(batch, now))
        return out[:limit]

    async def cleanup(self) -> int:
        """Prune expired index members (and any string Redis has not dropped yet) and empty scopes, then
        compact the change feed (changes older than ``changes_retention``).

        Works scope by scope in bounded batches; safe to run from many processes at once (each member is
        pruned by exactly one script, so the counts add up, and records its ``expired`` change once).
        Returns the entries removed.
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
                commands = [
                    self._script(scripts.CLEANUP, (self._keys.index(s),), (self._keys.entries(s), _CHUNK), s)
                    for s in pending
                ]
                for s in pending:
                    commands.extend(self._registered(s))
                replies = await self._conn.run(commands, idempotent=False)
                again: list[str] = []
                for s, (pruned, left) in zip(pending, replies[: len(pending)], strict=True):
                    removed += int(pruned)
                    if int(pruned) >= _CHUNK:
                        again.append(s)  # maybe more expired members in this scope
                    elif int(left) == 0:
                        empty.append(s)
                pending = again
            if empty:
                await self._forget(empty)
            if int(cursor) == 0:
                break
        if not self.changes_off:
            await (self._compact_cluster() if self.cluster else self._compact())
        return removed

    async def _compact(self) -> None:
        """Drop the changes older than ``changes_retention`` (SPEC §10), in bounded batches.

        First the global stream, which moves the floor (the highest revision removed) in the same script;
        then every scope stream whose first retained revision is at or below the floor, found through the
        stream registry, is trimmed up to the floor (and deleted when that empties it). Readers check the
        floor after reading, so a change is never trimmed unseen by a watch that does not raise.
        """
        compact_args = (self._retention_ms, _CHUNK)
        total = 0
        while True:
            pruned, floor = await self._conn.one(
                ("EVALSHA", scripts.COMPACT.sha, 2, self._keys.changes, self._keys.changes_floor, *compact_args),
                idempotent=True,
            )
            total += int(pruned)
            if int(pruned) < _CHUNK:
                break
        log_compaction(self._url.masked, total, self._retention_ms / 1000)
        while True:
            tags = await self._conn.one(
                ("ZRANGEBYSCORE", self._keys.changes_scopes, "-inf", floor, "LIMIT", 0, _SCOPE_BATCH), idempotent=True
            )
            if not tags:
                return
            await self._conn.run(
                [
                    (
                        "EVALSHA",
                        scripts.TRIM_SCOPE.sha,
                        2,
                        self._keys.stream_of_tag(_text(t)),
                        self._keys.changes_scopes,
                        floor,
                        t,
                        _CHUNK,
                    )
                    for t in tags
                ],
                idempotent=True,
            )

    async def _compact_cluster(self) -> None:
        """The Cluster's compaction: raise the store-wide floor (a cutoff time, in its own slot) first, then trim
        every registered scope stream to it, one script per stream (its slot)."""
        cutoff = int(
            await self._conn.one(
                ("EVALSHA", scripts.CLUSTER_FLOOR.sha, 1, self._keys.changes_floor, self._retention_ms),
                idempotent=True,
            )
        )
        while True:
            tags = [
                _text(t)
                for t in await self._conn.one(
                    ("ZRANGEBYSCORE", self._keys.changes_scopes, "-inf", f"({cutoff}", "LIMIT", 0, _SCOPE_BATCH),
                    idempotent=True,
                )
            ]
            if not tags:
                return
            replies = await self._conn.run(
                [
                    (
                        "EVALSHA",
                        scripts.CLUSTER_TRIM_SCOPE.sha,
                        1,
                        self._keys.stream_of_tag(t),
                        cutoff,
                        _CHUNK,
                        self._retention_ms,
                    )
                    for t in tags
                ],
                idempotent=True,
            )
            log_compaction(self._url.masked, sum(int(n) for n, _ in replies), self._retention_ms / 1000)
            gone: list[str] = []
            kept: list[Command] = []
            for tag, (_, first) in zip(tags, replies, strict=True):
                if not first:
                    gone.append(tag)
                else:  # the score becomes the first kept change's time: the next compaction skips it till then
                    kept.append(("ZADD", self._keys.changes_scopes, "XX", first.partition(b"-")[0], tag))
            if kept:
                await self._conn.run(kept, idempotent=True)
            if gone:
                # As _forget: a write that re-created a stream meanwhile has its stream back in the registry.
                await self._conn.one(("ZREM", self._keys.changes_scopes, *gone), idempotent=True)
                # XLEN, not EXISTS: an emptied stream stays until it expires (CLUSTER_TRIM_SCOPE).
                lengths = await self._conn.run([("XLEN", self._keys.stream_of_tag(t)) for t in gone], idempotent=True)
                refill = [x for t, n in zip(gone, lengths, strict=True) if n for x in (0, t)]
                if refill:
                    await self._conn.one(("ZADD", self._keys.changes_scopes, "NX", *refill), idempotent=True)

    # --- the change feed -----------------------------------------------------------------------

    def _floor(self, floor: bytes | None) -> int:
        """The highest revision compaction may have removed (a Cluster's floor is a cutoff time in ms)."""
        if floor is None:
            return 0
        if self.cluster:
            return max(0, int(floor) * scripts.RECORDING_CLUSTER - 1)
        return int(floor)

    async def _trimmed_after(self, stream: str, after: int) -> bool:
        """Whether compaction removed a change after ``after`` from ``stream`` (read below the floor only).

        On one server the floor is the highest revision removed: always. On a Cluster it is a time cutoff for
        every scope, so the stream's own record decides: the highest ID removed from it (Redis >= 7.0). A
        stream that is gone was emptied more than a retention period ago, or never written: nothing to report.
        """
        if not self.cluster:
            return True
        try:
            info = await self._conn.one(("XINFO", "STREAM", stream), idempotent=True)
        except StateBackendError as exc:
            if "no such key" in str(exc).lower():
                return False
            raise
        fields = dict(zip(info[0::2], info[1::2], strict=True))
        removed = fields.get(b"max-deleted-entry-id")
        if removed is None:  # Redis < 7.0 keeps no such record: the first change kept tells
            first = fields.get(b"first-entry")
            return first is not None and self._revision_of(first[0]) > after + 1
        return self._revision_of(removed) > after

    async def _compacted(self, scope: str | None, after: int, floor: int) -> ChangesCompactedError:
        """The error for a read after ``after`` below ``floor``: ``oldest`` is the first revision kept."""
        stream = self.stream_key(scope) if self.cluster else self._keys.changes
        oldest = await self._conn.one(("XRANGE", stream, "-", "+", "COUNT", 1), idempotent=True)
        return ChangesCompactedError(after, self._revision_of(oldest[0][0]) if oldest else floor + 1)

    def _all_scopes(self) -> None:
        if self.all_scopes_unsupported:
            raise StateConfigError(self.all_scopes_unsupported)

    async def revision(self, scope: str | None) -> int:
        """The counter for every scope; for one, its stream's last revision, at least the floor."""
        if scope is None:
            self._all_scopes()
            counter = await self._conn.one(("GET", self._keys.revision), idempotent=True)
            return 0 if counter is None else int(counter)
        last, floor = await self._conn.run(
            [("XREVRANGE", self._keys.stream(scope), "+", "-", "COUNT", 1), ("GET", self._keys.changes_floor)],
            idempotent=True,
        )
        floor_rev = self._floor(floor)
        return max(self._revision_of(last[0][0]), floor_rev) if last else floor_rev

    async def changes_after(
        self, scope: str | None, key: str | None, after: int, limit: int, wait: float
    ) -> list[Change]:
        """XRANGE of the stream after ``after``; if empty, one XREAD BLOCK (server-side wait) up to ``wait``.

        ``key`` is filtered here; the read goes on past changes of other keys until it finds some or the
        stream ends, so a busy scope cannot keep a key watch from reaching the end.
        """
        if scope is None:
            self._all_scopes()
        stream = self.stream_key(scope)
        cursor = after
        deadline = time.monotonic() + wait
        while True:
            # The floor is read after the range: if it is still <= after then, nothing after ``after`` was
            # trimmed before the range was read (the floor moves before any trim).
            entries, floor = await self._conn.run(
                [
                    ("XRANGE", stream, "(" + self._stream_id(cursor), "+", "COUNT", limit),
                    ("GET", self._keys.changes_floor),
                ],
                idempotent=True,
            )
            if after < self._floor(floor) and await self._trimmed_after(stream, after):
                raise await self._compacted(scope, after, self._floor(floor))
            if entries:
                cursor = self._revision_of(entries[-1][0])
                found = self._changes(scope, key, entries)
                if found:
                    return found
                if len(entries) >= limit:
                    continue  # all of another key, and maybe more after them
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            reply = await self._blocking.block(
                (
                    "XREAD",
                    "BLOCK",
                    max(1, int(left * 1000)),
                    "COUNT",
                    limit,
                    "STREAMS",
                    stream,
                    self._stream_id(cursor),
                ),
                wait=left,
            )
            if not reply:
                return []
            # RESP3 answers a map {stream: entries}, RESP2 a list of [stream, entries] pairs.
            entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
            cursor = self._revision_of(entries[-1][0])
            found = self._changes(scope, key, entries)
            if found:
                return found

    async def key_history(self, scope: str, key: str, before: int | None, limit: int) -> list[Change]:
        """XREVRANGE of the scope's stream from ``before`` (exclusive) back, filtered to ``key`` here, in batches that
        grow while other keys' changes fill them, until ``limit`` are found or the stream's first change is passed.

        The same per-scope stream (in the scope's slot) on one server and on a Cluster; what compaction trimmed is
        simply not there.
        """
        if before is not None and before <= 0:
            return []  # no revision is below 0 (and "(0-0" is no valid range end)
        stream = self.stream_key(scope)
        end = "+" if before is None else "(" + self._stream_id(before)
        count = min(max(limit, 16), _CHUNK)
        out: list[Change] = []
        while True:
            entries = await self._conn.one(("XREVRANGE", stream, end, "-", "COUNT", count), idempotent=True)
            out.extend(self._changes(scope, key, entries))
            if len(out) >= limit or len(entries) < count:
                return out[:limit]
            end = "(" + entries[-1][0].decode("ascii")
            count = min(count * 2, _CHUNK)

    def _changes(self, scope: str | None, key: str | None, entries: list[Any]) -> list[Change]:
        """Stream entries as :class:`Change` (of ``key`` only, when given)."""
        out: list[Change] = []
        wanted = None if key is None else key.encode("utf-8")
        for entry_id, flat in entries:
            fields = dict(zip(flat[0::2], flat[1::2], strict=True))
            if wanted is not None and fields[b"k"] != wanted:
                continue
            old, new, trace = fields.get(b"o"), fields.get(b"n"), fields.get(b"p")
            out.append(
                Change(
                    self._revision_of(entry_id),
                    _text(fields[b"e"]),  # type: ignore[arg-type]
                    scope if scope is not None else _text(fields[b"s"]),
                    _text(fields[b"k"]),
                    None if old is None else decode(old),
                    None if new is None else decode(new),
                    datetime.fromtimestamp(int(fields[b"t"]) / 1000, UTC),
                    None if trace is None else _text(trace),
                )
            )
        return out

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
            self._registered(
                scope,
                self._script(scripts.SET_MANY, (tag,), (self._keys.entries(scope), ttl_ms(ttl)), scope, *args),
                ("SADD", self._keys.registry, scope),
            ),
            # Re-running writes the same values again, but would record the changes twice.
            idempotent=self.changes_off,
        )

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        tag = self._keys.index(scope)
        return int(
            (
                await self._conn.run(
                    self._registered(
                        scope,
                        self._script(scripts.DELETE_MANY, (tag,), (self._keys.entries(scope),), scope, *keys),
                    ),
                    idempotent=False,
                )
            )[0]
        )
