"""The Redis backend's connection machinery: the pool, one round trip per batch of commands, errors.

Small requests are RESP-packed here and written straight to an idle pooled connection (one task less per
call on the hot path); larger ones go through redis-py's ``send_packed_command``. Replies are read in
order, error replies kept in place so the connection stays in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any, Final

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # redis-py >= 7
    from redis.maint_notifications import MaintNotificationsConfig as _MaintConfig
except ImportError:  # pragma: no cover - older redis-py has no such feature
    _MaintConfig = None  # type: ignore[assignment,misc]

from ...errors import StateBackendError, StateConfigError
from ...urls import StoreURL
from .scripts import SCRIPTS

__all__ = ["DRIVER_ERRORS", "Command", "Connection"]

Command = tuple[Any, ...]

# Errors after which a connection cannot be trusted and the request may be retried.
_TRANSIENT: Final = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
DRIVER_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError)
# Seconds a blocking read's reply may come after its block ends (a busy server, a slow network).
_BLOCK_MARGIN: Final = 10.0
# Requests up to this size are written straight to an idle socket (see _roundtrip).
_DIRECT_WRITE: Final = 65536

# URL query parameters passed to redis-py (the motia-state options were taken out by the config).
_URL_PARAMS: Final = frozenset(
    {"db", "socket_timeout", "socket_connect_timeout", "socket_keepalive", "health_check_interval", "client_name"}
)
_TLS_PARAMS: Final = frozenset(
    {
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)
_CERT_REQS: Final = ("none", "optional", "required")


def _check_params(url: StoreURL) -> None:
    """Refuse, by name, a query parameter redis-py would not take (it would raise a raw TypeError)."""
    for name, value in url.query:
        if name in _TLS_PARAMS:
            if url.scheme != "rediss":
                raise StateConfigError(
                    f"{url.masked!r}: {name} is a TLS parameter; it needs a rediss:// URL (TLS), not {url.scheme}://"
                )
            if name == "ssl_cert_reqs" and value not in _CERT_REQS:
                raise StateConfigError(f"{url.masked!r}: ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
        elif name not in _URL_PARAMS:
            allowed = ", ".join(sorted(_URL_PARAMS | _TLS_PARAMS | {"key_prefix", "pool_size", "connect_timeout"}))
            raise StateConfigError(
                f"{url.masked!r}: the Redis URL parameter {name!r} is not supported; allowed: {allowed}"
            )


def _pack(commands: Sequence[Command]) -> bytes:
    """RESP encoding of ``commands`` (arguments are str, int or bytes), in one buffer."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if type(arg) is bytes else str(arg).encode()
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class Connection:
    """A redis-py connection pool for one URL, and the round trips made on it."""

    def __init__(self, url: StoreURL, *, pool_size: int, connect_timeout: float) -> None:
        _check_params(url)
        self._url = url
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        # A bounded socket timeout: a dead server is reported instead of hanging a worker forever.
        self._socket_timeout = max(30.0, connect_timeout)
        self._slots: asyncio.Semaphore | None = None
        self._pool: ConnectionPool | None = self.new_pool()

    @property
    def pool_size(self) -> int:
        """The most connections the pool opens."""
        return self._pool_size

    def new_pool(self) -> ConnectionPool:
        options: dict[str, Any] = {}
        if _MaintConfig is not None:
            # With maintenance notifications on ("auto"), redis-py skips its check that a pooled connection
            # is still open, and a connection the server closed (restart, CLIENT KILL, idle timeout) fails
            # the next command. This adapter wants that check; it talks to plain Redis servers.
            options["maint_notifications_config"] = _MaintConfig(enabled=False)
        try:
            return ConnectionPool.from_url(
                self._url.text(),
                max_connections=self._pool_size,
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._socket_timeout,
                socket_keepalive=True,
                **options,
            )
        except (ValueError, TypeError) as exc:
            # The parser's message may quote pieces of a password that was not percent-encoded.
            raise StateConfigError(
                f"invalid Redis URL {self._url.masked!r}: it does not parse ({type(exc).__name__}); check host,"
                " port and db number, and percent-encode '@', ':' and '/' in the password"
            ) from None

    def error(self, exc: BaseException, action: str = "") -> StateBackendError:
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
        return StateBackendError(self._url.redact(f"{hint}{what} ({detail})"), backend="redis", url=self._url.masked)

    async def ping(self) -> None:
        """Check that the server answers (and the credentials are accepted)."""
        await self.run([("PING",)], idempotent=True)

    async def close(self) -> None:
        """Close every pooled connection; idempotent. A later operation opens a new pool."""
        pool, self._pool, self._slots = self._pool, None, None
        if pool is not None:
            with contextlib.suppress(*_TRANSIENT):  # the connections are being dropped anyway
                await pool.disconnect()

    async def _roundtrip(
        self, conn: AbstractConnection, commands: Sequence[Command], read_timeout: float | None = None
    ) -> list[Any]:
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
                if read_timeout is None:
                    replies.append(await conn.read_response())
                else:
                    # Not read_response(timeout=): on that timeout it returns None and keeps the connection,
                    # reply still pending. Ours cancels the read, which makes redis-py disconnect.
                    async with asyncio.timeout(read_timeout):
                        replies.append(await conn.read_response(timeout=math.inf))
            except ResponseError as exc:  # an error reply; keep reading so the connection stays in step
                replies.append(exc)
        return replies

    async def run(
        self, commands: Sequence[Command], *, idempotent: bool, read_timeout: float | None = None
    ) -> list[Any]:
        """Send ``commands`` in one round trip on one pooled connection and return their replies.

        A connection failing before anything was sent is always retried once (a pooled connection may
        have died with a restarted server); after sending, only ``idempotent`` requests are retried.
        A NOSCRIPT reply loads the scripts and re-sends the batch (the batches are built so that is safe).
        ``read_timeout`` (seconds) replaces the socket timeout for reading the replies: a blocking command
        (``XREAD BLOCK``) needs longer than the block, whatever ``socket_timeout`` the URL set.
        """
        attempt = 0
        while True:
            pool = self._pool
            if pool is None:
                pool = self._pool = self.new_pool()
            slots = self._slots
            if slots is None:
                slots = self._slots = asyncio.Semaphore(self._pool_size)
            sent = False
            try:
                async with slots:
                    conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
                    try:
                        sent = True
                        if read_timeout is None:
                            replies = await self._roundtrip(conn, commands)
                        else:
                            replies = await self._roundtrip(conn, commands, read_timeout)
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
                raise self.error(exc) from exc
            except RedisError as exc:
                raise self.error(exc) from exc
            for reply in replies:
                if isinstance(reply, NoScriptError) and attempt < 2:
                    await self.load_scripts()
                    attempt = 2
                    break
                if isinstance(reply, ResponseError):
                    raise self.error(reply) from reply
            else:
                return replies

    async def load_scripts(self) -> None:
        await self.run([("SCRIPT", "LOAD", s.text) for s in SCRIPTS], idempotent=True)

    async def one(self, command: Command, *, idempotent: bool) -> Any:
        return (await self.run([command], idempotent=idempotent))[0]

    async def block(self, command: Command, *, wait: float) -> Any:
        """Run one blocking read (``XREAD BLOCK``) that the server may hold ``wait`` seconds.

        The reply is read with a timeout a margin past the block, so neither a short ``socket_timeout``
        nor a slow reply cuts it off. A cancelled call disconnects its connection (``run`` does that to any
        half-read reply), so the pool never hands out a connection with a pending reply.
        """
        return (await self.run([command], idempotent=True, read_timeout=wait + _BLOCK_MARGIN))[0]

    # --- single entries ------------------------------------------------------------------------
