"""Redis backend (SPEC §7): one JSON string per entry, a per-scope index, native millisecond expiry.

Layout, for the default prefix ``motia:state:``:

* ``motia:state:{<scope>}:<key>`` -- a string holding the entry's JSON text (``values.encode``), with a
  native ``PX`` expiry. ``%`` and ``}`` in the scope are percent-encoded (``%25``, ``%7D``) so the first
  ``}`` always ends the scope and the braces form a Cluster hash tag: every key of a scope is in one slot.
* ``motia:state:{<scope>}`` -- the scope's index, a sorted set: member = key, score = expiry in epoch
  milliseconds (``inf`` for none). It sits in the scope's slot, so a Lua script can update it atomically
  with the entry; it lets ``keys``/``list``/``clear`` cost what the scope holds, never a database scan.
* ``motia:state:__scopes__`` -- the registry of scopes (a set) for ``list_groups``/``cleanup``; it is in
  another slot, so it is updated in the same round trip as the write but outside the script, and pruned
  by ``cleanup`` of scopes whose index is empty.

Expiry times in the index come from the server's ``TIME`` inside the same script that sets ``PX``, so the
index and Redis's own expiry agree whatever the clients' clocks say. Needs Redis >= 6.2 (``SET … GET``,
``GETDEL``, ``KEEPTTL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # redis-py >= 7
    from redis.maint_notifications import MaintNotificationsConfig as _MaintConfig
except ImportError:  # pragma: no cover - older redis-py has no such feature
    _MaintConfig = None  # type: ignore[assignment,misc]

from ..adapter import Entry, StateAdapter, StateItem
from ..errors import StateBackendError, StateConfigError, mask_url
from ..ops import Filter, match
from ..values import decode, encode

__all__ = ["RedisAdapter"]

_Command = tuple[Any, ...]

# Errors after which a connection cannot be trusted and the request may be retried.
_TRANSIENT: Final = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

# Lua's unpack() and Redis's argument lists are bounded; batch members this many at a time.
_CHUNK: Final = 1000
# Requests up to this size are written straight to an idle socket (see _roundtrip).
_DIRECT_WRITE: Final = 65536
# Scopes handled per round trip by cleanup / list_groups / items(None).
_SCOPE_BATCH: Final = 500
# Optimistic update: attempts before giving up (only reached under pathological contention).
_MAX_CAS_ATTEMPTS: Final = 10_000

# Server time in epoch ms, shared by the scripts (TIME is allowed in scripts: effects are replicated).
_NOW: Final = "local __t = redis.call('TIME')\nlocal now = __t[1] * 1000 + math.floor(__t[2] / 1000)\n"


class _Script:
    """A Lua script run with EVALSHA; loaded once per server (NOSCRIPT triggers a reload)."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


# KEYS[1] entry, KEYS[2] index; ARGV[1] JSON, ARGV[2] key, ARGV[3] ttl ms ('' = none). Returns the old text.
_SET = _Script(
    """
local old
if ARGV[3] == '' then
  old = redis.call('SET', KEYS[1], ARGV[1], 'GET')
  redis.call('ZADD', KEYS[2], 'inf', ARGV[2])
else
  old = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3], 'GET')
  local t = redis.call('TIME')
  local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3])
  redis.call('ZADD', KEYS[2], string.format('%d', exp), ARGV[2])
end
return old
"""
)

# KEYS[1] entry, KEYS[2] index; ARGV[1] key. Returns the old text.
_DELETE = _Script(
    """
local old = redis.call('GETDEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return old
"""
)

# Compare-and-swap for update. KEYS[1] entry, KEYS[2] index; ARGV[1] '1' if the entry was read as present
# (then ARGV[2] is the text read), ARGV[3] new text, ARGV[4] key, ARGV[5] ttl ms for a new entry ('' = none).
# Returns {1} when written, or {0, current text (nil if absent)} when the entry changed since it was read,
# so the caller can retry without another read.
_CAS = _Script(
    """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return {0, cur} end
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  return {1}
end
if cur then return {0, cur} end
if ARGV[5] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], 'inf', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
  local t = redis.call('TIME')
  local exp = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[2], string.format('%d', exp), ARGV[4])
end
return {1}
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix '<prefix>{<scope>}:'. Live keys whose entry exists.
_KEYS = _Script(
    _NOW
    + """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
local out = {}
for _, m in ipairs(members) do
  if redis.call('EXISTS', ARGV[1] .. m) == 1 then out[#out + 1] = m end
end
return out
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] 'WITHSCORES' or ''. Returns {members, texts}: the live
# members (flat member/score pairs when asked) and their texts (nil where the entry is gone).
_VALUES = _Script(
    _NOW
    + """
local members
if ARGV[2] == '' then
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf')
else
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now), '+inf', 'WITHSCORES')
end
local step = (ARGV[2] == '') and 1 or 2
local keys = {}
for i = 1, #members, step do keys[#keys + 1] = ARGV[1] .. members[i] end
local texts = {}
for i = 1, #keys, 1000 do
  local got = redis.call('MGET', unpack(keys, i, math.min(i + 999, #keys)))
  for j = 1, #got do texts[#texts + 1] = got[j] end
end
return {members, texts}
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix. Deletes every entry of the scope and the index; returns how many
# live entries were removed (DEL does not count keys Redis has already expired).
_CLEAR = _Script(
    """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for i = 1, #members, 1000 do
  local keys = {}
  for j = i, math.min(i + 999, #members) do keys[#keys + 1] = ARGV[1] .. members[j] end
  n = n + redis.call('DEL', unpack(keys))
end
redis.call('DEL', KEYS[1])
return n
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] ttl ms ('' = none); ARGV[3..] key, text pairs.
# The index is written first: if it has the wrong type the script fails before any entry is touched.
_SET_MANY = _Script(
    """
local score = 'inf'
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  score = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]))
end
local z = {}
for i = 3, #ARGV, 2 do
  z[#z + 1] = score
  z[#z + 1] = ARGV[i]
end
for i = 1, #z, 1000 do redis.call('ZADD', KEYS[1], unpack(z, i, math.min(i + 999, #z))) end
for i = 3, #ARGV, 2 do
  if ARGV[2] == '' then
    redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1])
  else
    redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 1], 'PX', ARGV[2])
  end
end
return 1
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2..] keys. Returns how many live entries were removed.
_DELETE_MANY = _Script(
    """
local n = 0
for i = 2, #ARGV, 1000 do
  local keys = {}
  local members = {}
  for j = i, math.min(i + 999, #ARGV) do
    keys[#keys + 1] = ARGV[1] .. ARGV[j]
    members[#members + 1] = ARGV[j]
  end
  n = n + redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[1], unpack(members))
end
return n
"""
)

# KEYS[1] index; ARGV[1] entry-key prefix; ARGV[2] batch size. Prunes up to a batch of expired members
# (and their strings, if Redis has not dropped them yet). Returns {pruned, members left}.
_CLEANUP = _Script(
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[2]))
if #expired > 0 then
  local keys = {}
  for i, m in ipairs(expired) do keys[i] = ARGV[1] .. m end
  redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[1], unpack(expired))
end
return {#expired, redis.call('ZCARD', KEYS[1])}
"""
)

_SCRIPTS: Final = (_SET, _DELETE, _CAS, _KEYS, _VALUES, _CLEAR, _SET_MANY, _DELETE_MANY, _CLEANUP)


def _pack(commands: Sequence[_Command]) -> bytes:
    """RESP encoding of ``commands`` (arguments are str, int or bytes), in one buffer."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if type(arg) is bytes else str(arg).encode()
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _tag(scope: str) -> str:
    """The scope as written inside the braces: only ``%`` and ``}`` are percent-encoded."""
    if "%" in scope or "}" in scope:
        return scope.replace("%", "%25").replace("}", "%7D")
    return scope


def _ttl_ms(ttl: float | None) -> str:
    """A TTL in whole milliseconds for PX (at least 1), or '' for none."""
    if ttl is None:
        return ""
    return str(max(1, round(ttl * 1000)))


def _expiry(score: bytes | float | str) -> datetime | None:
    value = float(score)
    if value == float("inf"):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def _text(member: bytes) -> str:
    return member.decode("utf-8")


class RedisAdapter(StateAdapter):
    """State in Redis: ``redis.asyncio`` (hiredis parser) over one connection pool.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://…`` for TLS.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "motia:state:",
        pool_size: int = 50,
        connect_timeout: float = 10.0,
    ) -> None:
        if type(key_prefix) is not str:
            raise StateConfigError(f"key_prefix must be a str, got {type(key_prefix).__name__}")
        self._url = url
        self._prefix = key_prefix
        self._registry = key_prefix + "__scopes__"
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        # A bounded socket timeout: a dead server is reported instead of hanging a worker forever.
        self._socket_timeout = max(30.0, connect_timeout)
        self._pool: ConnectionPool | None = None
        self._slots: asyncio.Semaphore | None = None
        self._pool = self._new_pool()

    def __repr__(self) -> str:
        return f"RedisAdapter({mask_url(self._url)!r}, key_prefix={self._prefix!r})"

    @property
    def key_prefix(self) -> str:
        """The prefix of every Redis key this adapter writes."""
        return self._prefix

    def entry_key(self, scope: str, key: str) -> str:
        """The Redis key holding ``scope``/``key``: ``<prefix>{<scope>}:<key>``."""
        return f"{self._prefix}{{{_tag(scope)}}}:{key}"

    def index_key(self, scope: str) -> str:
        """The Redis key of the scope's index (a sorted set): ``<prefix>{<scope>}``."""
        return f"{self._prefix}{{{_tag(scope)}}}"

    # --- connections ---------------------------------------------------------------------------

    def _new_pool(self) -> ConnectionPool:
        options: dict[str, Any] = {}
        if _MaintConfig is not None:
            # With maintenance notifications on ("auto"), redis-py skips its check that a pooled connection
            # is still open, and a connection the server closed (restart, CLIENT KILL, idle timeout) fails
            # the next command. This adapter wants that check; it talks to plain Redis servers.
            options["maint_notifications_config"] = _MaintConfig(enabled=False)
        try:
            return ConnectionPool.from_url(
                self._url,
                max_connections=self._pool_size,
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._socket_timeout,
                socket_keepalive=True,
                **options,
            )
        except (ValueError, TypeError) as exc:
            # The parser's message may quote pieces of a password that was not percent-encoded.
            raise StateConfigError(
                f"invalid Redis URL {mask_url(self._url)!r}: it does not parse ({type(exc).__name__}); check host,"
                " port and db number, and percent-encode '@', ':' and '/' in the password"
            ) from None

    def _error(self, exc: BaseException, action: str = "") -> StateBackendError:
        what = f" during {action}" if action else ""
        if isinstance(exc, RedisTimeoutError | asyncio.TimeoutError):
            hint = "Redis did not answer in time; check that the server is up and not overloaded"
        elif isinstance(exc, RedisConnectionError | OSError):
            hint = "cannot reach Redis; check that the server is running and the URL (host, port, password) is right"
        elif isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE"):
            hint = "a key under the motia-state prefix holds a value of another type; remove it or change key_prefix"
        else:
            hint = "Redis refused the request"
        detail = str(exc) or type(exc).__name__
        return StateBackendError(f"{hint}{what} ({detail})", backend=self.backend, url=self._url)

    def translate_error(self, exc: Exception) -> Exception | None:
        """Driver and socket errors become :class:`StateBackendError` with the masked URL."""
        if isinstance(exc, RedisError | OSError | asyncio.TimeoutError):
            return self._error(exc)
        return None

    async def connect(self) -> None:
        """Check that the server answers (and the credentials are accepted)."""
        await self._run([("PING",)], idempotent=True)

    async def close(self) -> None:
        """Close every pooled connection; idempotent. A later operation opens a new pool."""
        pool, self._pool, self._slots = self._pool, None, None
        if pool is not None:
            with contextlib.suppress(*_TRANSIENT):  # the connections are being dropped anyway
                await pool.disconnect()

    async def _roundtrip(self, conn: AbstractConnection, commands: Sequence[_Command]) -> list[Any]:
        data = _pack(commands)
        writer = getattr(conn, "_writer", None)
        if (
            writer is not None
            and len(data) <= _DIRECT_WRITE
            and not writer.transport.is_closing()
            and writer.transport.get_write_buffer_size() == 0
        ):
            # Small request on an idle socket: it goes to the kernel at once, so there is nothing to drain;
            # the reply read below carries the socket timeout. Saves a task per call on the hot path.
            writer.write(data)
        else:
            await conn.send_packed_command(data, check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:  # an error reply; keep reading so the connection stays in step
                replies.append(exc)
        return replies

    async def _run(self, commands: Sequence[_Command], *, idempotent: bool) -> list[Any]:
        """Send ``commands`` in one round trip on one pooled connection and return their replies.

        A connection failing before anything was sent is always retried once (a pooled connection may
        have died with a restarted server); after sending, only ``idempotent`` requests are retried.
        A NOSCRIPT reply loads the scripts and re-sends the batch (the batches are built so that is safe).
        """
        attempt = 0
        while True:
            pool = self._pool
            if pool is None:
                pool = self._pool = self._new_pool()
            slots = self._slots
            if slots is None:
                slots = self._slots = asyncio.Semaphore(self._pool_size)
            sent = False
            try:
                async with slots:
                    conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
                    try:
                        sent = True
                        replies = await self._roundtrip(conn, commands)
                    except BaseException:
                        # A half-read reply (error, timeout, cancellation) would desync the connection.
                        await conn.disconnect(nowait=True)
                        raise
                    finally:
                        await pool.release(conn)
            except _TRANSIENT as exc:
                if attempt == 0 and (idempotent or not sent):
                    attempt += 1
                    continue
                raise self._error(exc) from exc
            except RedisError as exc:
                raise self._error(exc) from exc
            for reply in replies:
                if isinstance(reply, NoScriptError) and attempt < 2:
                    await self._load_scripts()
                    attempt = 2
                    break
                if isinstance(reply, ResponseError):
                    raise self._error(reply) from reply
            else:
                return replies

    async def _load_scripts(self) -> None:
        await self._run([("SCRIPT", "LOAD", s.text) for s in _SCRIPTS], idempotent=True)

    async def _one(self, command: _Command, *, idempotent: bool) -> Any:
        return (await self._run([command], idempotent=idempotent))[0]

    # --- single entries ------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> Any:
        text = await self._one(("GET", self.entry_key(scope, key)), idempotent=True)
        return None if text is None else decode(text)

    async def get_entry(self, scope: str, key: str) -> Entry | None:
        text, score = await self._run(
            [("GET", self.entry_key(scope, key)), ("ZSCORE", self.index_key(scope), key)], idempotent=True
        )
        if text is None:
            return None
        return Entry(decode(text), None if score is None else _expiry(score))

    async def set(self, scope: str, key: str, value: Any) -> None:
        await self.set_entry(scope, key, value, None)

    async def set_entry(self, scope: str, key: str, value: Any, ttl: float | None) -> Any:
        tag = self._prefix + "{" + _tag(scope) + "}"
        old = (
            await self._run(
                [
                    ("EVALSHA", _SET.sha, 2, tag + ":" + key, tag, encode(value), key, _ttl_ms(ttl)),
                    ("SADD", self._registry, scope),
                ],
                idempotent=False,
            )
        )[0]
        return None if old is None else decode(old)

    async def delete(self, scope: str, key: str) -> None:
        await self.delete_entry(scope, key)

    async def delete_entry(self, scope: str, key: str) -> Any:
        tag = self._prefix + "{" + _tag(scope) + "}"
        old = await self._one(("EVALSHA", _DELETE.sha, 2, tag + ":" + key, tag, key), idempotent=False)
        return None if old is None else decode(old)

    async def update_entry(
        self, scope: str, key: str, apply: Callable[[Any], Any], ttl_if_new: float | None
    ) -> tuple[Any, Any]:
        """Optimistic compare-and-swap around ``apply``: exact numbers, atomic across processes.

        The JSON is never decoded in Lua (cjson would lose big integers, float digits and ``{}`` vs ``[]``):
        the text is read, ``apply`` runs here, and a script writes the result only if the text is unchanged.
        """
        tag = self._prefix + "{" + _tag(scope) + "}"
        ekey = tag + ":" + key
        ttl_ms = _ttl_ms(ttl_if_new)
        text: bytes | None = await self._one(("GET", ekey), idempotent=True)
        for attempt in range(_MAX_CAS_ATTEMPTS):
            old = None if text is None else decode(text)
            new = apply(old)  # raises before anything is written
            new_text = encode(new)
            if text is None:
                commands: list[_Command] = [
                    ("EVALSHA", _CAS.sha, 2, ekey, tag, "0", "", new_text, key, ttl_ms),
                    ("SADD", self._registry, scope),
                ]
            else:
                commands = [("EVALSHA", _CAS.sha, 2, ekey, tag, "1", text, new_text, key, ttl_ms)]
            # Not retried blindly: a lost reply could mean the write happened.
            reply = (await self._run(commands, idempotent=False))[0]
            if reply[0] == 1:
                return old, new
            # Lost the race: the reply carries the current text. Back off a little, with jitter, so the
            # contenders spread out instead of colliding again in lockstep.
            text = reply[1] if len(reply) > 1 else None
            await asyncio.sleep(random.random() * min(0.005, 0.0001 * (1 << min(attempt, 6))))
        raise StateBackendError(
            f"update of scope {scope!r} key {key!r} kept conflicting with concurrent writes; retry later",
            backend=self.backend,
            url=self._url,
        )

    async def ttl(self, scope: str, key: str) -> float | None:
        left = await self._one(("PTTL", self.entry_key(scope, key)), idempotent=True)
        return None if left < 0 else left / 1000

    # --- scopes --------------------------------------------------------------------------------

    async def clear(self, scope: str) -> int:
        tag = self._prefix + "{" + _tag(scope) + "}"
        return int(await self._one(("EVALSHA", _CLEAR.sha, 1, tag, tag + ":"), idempotent=False))

    async def keys(self, scope: str) -> list[str]:
        tag = self._prefix + "{" + _tag(scope) + "}"
        members = await self._one(("EVALSHA", _KEYS.sha, 1, tag, tag + ":"), idempotent=True)
        return [_text(m) for m in members]

    async def values(self, scope: str) -> list[Any]:
        tag = self._prefix + "{" + _tag(scope) + "}"
        members, texts = await self._one(("EVALSHA", _VALUES.sha, 1, tag, tag + ":", ""), idempotent=True)
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
            out.append(StateItem(scope, _text(member), value, _expiry(score)))
        return out

    def _items_command(self, scope: str) -> _Command:
        tag = self._prefix + "{" + _tag(scope) + "}"
        return ("EVALSHA", _VALUES.sha, 1, tag, tag + ":", "WITHSCORES")

    async def _items_page(
        self, scope: str, filters: Sequence[Filter], limit: int | None, after: str | None
    ) -> list[StateItem]:
        """One page of ``scope``: keys after ``after`` (if given), values read only for the page's keys.

        The index is scored by expiry, so no lex range serves key order: the scope's live key *names* are
        fetched and sorted here. Memory is therefore bounded by the scope's key names, not by its values,
        which are fetched (with their expiry scores) one chunk at a time in one round trip each.
        """
        tag = self._prefix + "{" + _tag(scope) + "}"
        members: list[bytes] = await self._one(("EVALSHA", _KEYS.sha, 1, tag, tag + ":"), idempotent=True)
        # UTF-8 byte order is code point order, so raw members compare and sort as the keys do.
        if after is None:
            names = sorted(members)
        else:
            floor = after.encode("utf-8")
            names = sorted(m for m in members if m > floor)
        del members
        entry_prefix = (tag + ":").encode("utf-8")
        out: list[StateItem] = []
        start = 0
        while start < len(names) and (limit is None or len(out) < limit):
            # Without filters every live key lands in the page, so read no more values than still wanted.
            size = _CHUNK if limit is None or filters else min(_CHUNK, limit - len(out))
            chunk = names[start : start + size]
            start += size
            texts, scores = await self._run(
                [("MGET", *[entry_prefix + m for m in chunk]), ("ZMSCORE", tag, *chunk)], idempotent=True
            )
            for member, text, score in zip(chunk, texts, scores, strict=True):
                if text is None:  # expired or deleted since the names were read
                    continue
                value = decode(text)
                if filters and not match(value, filters):
                    continue
                out.append(StateItem(scope, _text(member), value, None if score is None else _expiry(score)))
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
            found = self._scope_items(scope, await self._one(self._items_command(scope), idempotent=True), filters)
            return found if limit is None else found[:limit]
        out: list[StateItem] = []
        scopes = sorted(await self.list_groups())
        for start in range(0, len(scopes), _SCOPE_BATCH):
            batch = scopes[start : start + _SCOPE_BATCH]
            replies = await self._run([self._items_command(s) for s in batch], idempotent=True)
            for s, reply in zip(batch, replies, strict=True):
                out.extend(self._scope_items(s, reply, filters))
                if limit is not None and len(out) >= limit:
                    return out[:limit]
        return out

    async def list_groups(self) -> list[str]:
        (now_s, now_us), scopes = await self._run([("TIME",), ("SMEMBERS", self._registry)], idempotent=True)
        now = int(now_s) * 1000 + int(now_us) // 1000
        ordered = list(scopes)
        live: list[str] = []
        for start in range(0, len(ordered), _SCOPE_BATCH):
            batch = [_text(s) for s in ordered[start : start + _SCOPE_BATCH]]
            counts = await self._run([("ZCOUNT", self.index_key(s), f"({now}", "+inf") for s in batch], idempotent=True)
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
            cursor, members = await self._one(("SSCAN", self._registry, cursor, "COUNT", _SCOPE_BATCH), idempotent=True)
            pending = [_text(m) for m in members]
            empty: list[str] = []
            while pending:
                replies = await self._run(
                    [("EVALSHA", _CLEANUP.sha, 1, self.index_key(s), self.index_key(s) + ":", _CHUNK) for s in pending],
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
        await self._one(("SREM", self._registry, *scopes), idempotent=True)
        exists = await self._run([("EXISTS", self.index_key(s)) for s in scopes], idempotent=True)
        refill = [s for s, n in zip(scopes, exists, strict=True) if n]
        if refill:
            await self._one(("SADD", self._registry, *refill), idempotent=True)

    # --- batches -------------------------------------------------------------------------------

    async def get_many(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        tag = self._prefix + "{" + _tag(scope) + "}:"
        texts = await self._one(("MGET", *[tag + k for k in keys]), idempotent=True)
        return {k: decode(t) for k, t in zip(keys, texts, strict=True) if t is not None}

    async def set_many(self, scope: str, mapping: Mapping[str, Any], ttl: float | None) -> None:
        """All entries in one script call: atomic, one round trip (with the registry update)."""
        tag = self._prefix + "{" + _tag(scope) + "}"
        args: list[str] = []
        for k, v in mapping.items():
            args.append(k)
            args.append(encode(v))
        await self._run(
            [
                ("EVALSHA", _SET_MANY.sha, 1, tag, tag + ":", _ttl_ms(ttl), *args),
                ("SADD", self._registry, scope),
            ],
            idempotent=True,  # re-running writes the same values again
        )

    async def delete_many(self, scope: str, keys: Sequence[str]) -> int:
        tag = self._prefix + "{" + _tag(scope) + "}"
        return int(await self._one(("EVALSHA", _DELETE_MANY.sha, 1, tag, tag + ":", *keys), idempotent=False))
