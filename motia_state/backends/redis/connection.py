"""The Redis backend's connection machinery: one redis-py client (a server or a Cluster), batches, errors.

Everything goes through redis-py's public API. A Cluster (``redis+cluster://`` / ``rediss+cluster://``) is
served by ``RedisCluster``, which routes each command by its slot and follows ``MOVED``/``ASK``:
``execute_command`` for one command, a non-transactional pipeline for a batch. A single server is served by
the same client's connection pool directly (``get_connection``, ``send_packed_command``, ``read_response``:
public calls of redis-py's connections), which the benchmark shows to be a third faster on a ``set``. Both
sit behind one ``run`` with the same replies, errors and retry rules.

Replies are taken raw (no response callbacks: each command's reply is what the server sent, the same on every
redis-py version and topology), and error replies are kept in place. redis-py's own retries are off: whether a
request may run twice is this module's decision (``idempotent``), not the driver's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import ssl
from collections.abc import Sequence
from typing import Any, Final

import hiredis
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import StateBackendError, StateConfigError
from ...urls import StoreURL
from .scripts import SCRIPTS

__all__ = ["CLUSTER_SCHEMES", "DRIVER_ERRORS", "Command", "Connection"]

Command = tuple[Any, ...]
# Round trips on one server in flight before further requests queue to share the next one (``_shared``).
_IN_FLIGHT: Final = 1
_pack: Final = hiredis.pack_command

CLUSTER_SCHEMES: Final = frozenset({"redis+cluster", "rediss+cluster"})
_TLS_SCHEMES: Final = frozenset({"rediss", "rediss+cluster"})
# Errors after which a connection cannot be trusted and an idempotent request may be sent again. A Cluster's
# failover window answers CLUSTERDOWN / TRYAGAIN / MASTERDOWN: nothing ran, so the same rule applies.
_TRANSIENT: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    asyncio.TimeoutError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
    ClusterError,
    RedisClusterException,
)
DRIVER_ERRORS: Final = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
# Seconds a blocking read's reply may come after its block ends (a busy server, a slow network).
_BLOCK_MARGIN: Final = 10.0
# Pause before sending an idempotent request again after a transient error (a Cluster electing a new master).
_RETRY_PAUSE: Final = 0.1

_log = logging.getLogger("motia_state")


def _kind(exc: BaseException) -> str:
    """What went wrong, for a log line: the error's class and the first line of its message (no argument)."""
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


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
# ssl_min_version by name (redis-py itself takes only the number of an ssl.TLSVersion).
_TLS_VERSIONS: Final = {"TLSv1_2": ssl.TLSVersion.TLSv1_2, "TLSv1_3": ssl.TLSVersion.TLSv1_3}
_TLS_FILES: Final = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
# Every command the adapters send: their replies are taken raw (see the module docstring).
_COMMANDS: Final = (
    *("DEL", "EVALSHA", "EXISTS", "GET", "GETDEL", "HGETALL", "HMGET", "MGET", "PEXPIRETIME", "PING", "PTTL"),
    *(
        "SADD",
        "SCAN",
        "SET",
        "SMEMBERS",
        "SREM",
        "SSCAN",
        "TIME",
        "XINFO STREAM",
        "XLEN",
        "XRANGE",
        "XREAD",
        "XREVRANGE",
    ),
    *("ZADD", "ZCOUNT", "ZMSCORE", "ZRANGE", "ZRANGEBYSCORE", "ZREM", "ZSCORE"),
)


def _raw(response: Any, **options: Any) -> Any:
    return response


@functools.cache
def _tls_parameters_taken() -> frozenset[str]:
    """The TLS parameters the installed redis-py's connections take (``ssl_ca_path`` came in 6.x)."""
    return frozenset(inspect.signature(SSLConnection.__init__).parameters) & _TLS_PARAMS


def _check_params(url: StoreURL) -> None:
    """Refuse, by name, a query parameter redis-py would not take (it would raise a raw TypeError)."""
    for name, value in url.query:
        if name in _TLS_PARAMS:
            if url.scheme not in _TLS_SCHEMES:
                raise StateConfigError(
                    f"{url.masked!r}: {name} is a TLS parameter; it needs a rediss:// URL (TLS), not {url.scheme}://"
                )
            if name not in _tls_parameters_taken():
                raise StateConfigError(
                    f"{url.masked!r}: the installed redis-py ({redis.__version__}) does not take {name}; upgrade"
                    " redis-py, or leave the parameter out"
                )
            if name == "ssl_cert_reqs" and value not in _CERT_REQS:
                raise StateConfigError(f"{url.masked!r}: ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
            if name == "ssl_min_version" and value not in _TLS_VERSIONS:
                raise StateConfigError(
                    f"{url.masked!r}: ssl_min_version must be one of {', '.join(_TLS_VERSIONS)}, got {value!r}"
                )
            if name in _TLS_FILES and not os.path.isfile(value):
                raise StateConfigError(f"{url.masked!r}: {name}: no such file {value!r}")
            if name == "ssl_ca_path" and not os.path.isdir(value):
                raise StateConfigError(f"{url.masked!r}: ssl_ca_path: no such directory {value!r}")
        elif name not in _URL_PARAMS:
            allowed = ", ".join(sorted(_URL_PARAMS | _TLS_PARAMS | {"key_prefix", "pool_size", "connect_timeout"}))
            raise StateConfigError(
                f"{url.masked!r}: the Redis URL parameter {name!r} is not supported; allowed: {allowed}"
            )
    if url.scheme in CLUSTER_SCHEMES:
        db = url.path.strip("/") or dict(url.query).get("db", "0")
        if db != "0":
            raise StateConfigError(
                f"{url.masked!r}: a Redis Cluster has only database 0; drop the /{db} (or ?db=) from the URL"
            )


def _cluster_seeds(url: StoreURL) -> list[tuple[str, int]]:
    seeds = [(host or "localhost", port or 6379) for host, port in url.host_list()]
    if not seeds:
        raise StateConfigError(f"{url.masked!r}: a redis+cluster:// URL names at least one node (host:port)")
    return seeds


class Connection:
    """A redis-py client for one URL (a server's connection pool, or a Cluster's per-node pools), and the
    round trips made on it."""

    def __init__(self, url: StoreURL, *, pool_size: int, connect_timeout: float, blocking: bool = False) -> None:
        _check_params(url)
        self._url = url
        # For blocking reads (``block``): no socket timeout (the URL's too), each call is bounded instead.
        self._blocking = blocking
        self.cluster = url.scheme in CLUSTER_SCHEMES
        self._seeds = _cluster_seeds(url) if self.cluster else []
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        # A bounded socket timeout: a dead server is reported instead of hanging a worker forever.
        self._socket_timeout = max(30.0, connect_timeout)
        self._slots: asyncio.Semaphore | None = None
        self._client: Redis | RedisCluster | None = self.new_client()
        self._answered = False  # whether the server ever answered: only then is a lost connection worth a log line
        # Requests queued to share the next round trip (``_shared``), and the round trips in flight.
        self._pipe_loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0
        self._queued: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] | None = None
        self._free: asyncio.Future[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    @property
    def pool_size(self) -> int:
        """The most connections the pool opens (per node, on a Cluster)."""
        return self._pool_size

    def _driver_url(self) -> str:
        """The URL redis-py parses: a Cluster's is its first seed's, in the plain scheme."""
        if not self.cluster:
            return self._for_driver(self._url).text()
        host, port = self._seeds[0]
        shown = f"[{host}]" if ":" in host else host
        scheme = "rediss" if self._url.scheme == "rediss+cluster" else "redis"
        url = self._url.replace(scheme=scheme, path="", hosts=f"{shown}:{port}")
        return self._for_driver(url).text()

    def _for_driver(self, url: StoreURL) -> StoreURL:
        """Without what is passed as a keyword instead (``new_client``)."""
        return url.without({"ssl_min_version", *(("socket_timeout",) if self._blocking else ())})

    def new_client(self) -> Redis | RedisCluster:
        options: dict[str, Any] = {
            "socket_connect_timeout": self._connect_timeout,
            "socket_timeout": None if self._blocking else self._socket_timeout,
            "socket_keepalive": True,
            "max_connections": self._pool_size,
            # Retries are this module's (``run``): redis-py would send a non-idempotent write twice.
            "retry": Retry(NoBackoff(), 0),
            "protocol": 2,
        }
        min_version = dict(self._url.query).get("ssl_min_version")
        if min_version is not None:
            options["ssl_min_version"] = _TLS_VERSIONS[min_version]
        try:
            client: Redis | RedisCluster
            if self.cluster:
                # Tolerate the seeds' order: a seed that is down is skipped while another answers.
                seeds = [ClusterNode(h, p) for h, p in self._seeds[1:]]
                client = RedisCluster.from_url(self._driver_url(), startup_nodes=seeds, **options)
            else:
                client = Redis.from_url(self._driver_url(), **options)
        except (ValueError, TypeError, RedisClusterException) as exc:
            # The parser's message may quote pieces of a password that was not percent-encoded.
            raise StateConfigError(
                f"invalid Redis URL {self._url.masked!r}: it does not parse ({type(exc).__name__}); check host,"
                " port and db number, the query parameters, and percent-encode '@', ':' and '/' in the password"
            ) from None
        for command in _COMMANDS:
            client.set_response_callback(command, _raw)
        return client

    def error(self, exc: BaseException, action: str = "") -> StateBackendError:
        what = f" during {action}" if action else ""
        text = str(exc)
        if isinstance(exc, NoPermissionError) or text.startswith("NOPERM"):
            hint = (
                "the Redis user lacks a permission motia-state needs (grant it with ACL SETUSER, e.g. +@all on the"
                " key prefix, or the commands listed in the docs)"
            )
        elif isinstance(exc, AuthenticationError) or "WRONGPASS" in text or "invalid username-password" in text:
            hint = "Redis refused the credentials; check the user and password of the URL"
        elif isinstance(exc, ssl.SSLError) or "[SSL" in text or "CERTIFICATE_VERIFY_FAILED" in text:
            hint = (
                "the TLS handshake with Redis failed; check ssl_ca_certs (the CA that signed the server's"
                " certificate), that the certificate names the URL's host, and any client certificate"
            )
        elif isinstance(exc, RedisTimeoutError | asyncio.TimeoutError):
            hint = "Redis did not answer in time; check that the server is up and not overloaded"
        elif isinstance(exc, ClusterDownError | TryAgainError | MasterDownError | ClusterError):
            hint = "the Redis Cluster cannot serve this request now (a failover or resharding); retry shortly"
        elif isinstance(exc, RedisConnectionError | OSError | RedisClusterException):
            hint = "cannot reach Redis; check that the server is running and the URL (host, port, password) is right"
        elif isinstance(exc, ResponseError) and text.startswith("WRONGTYPE"):
            hint = "a key under the motia-state prefix holds a value of another type; remove it or change key_prefix"
        else:
            hint = "Redis refused the request"
        # The first line, bounded: a driver message may quote a whole command (a script's text).
        detail = (text.splitlines()[0][:300] if text else "") or type(exc).__name__
        return StateBackendError(self._url.redact(f"{hint}{what} ({detail})"), backend="redis", url=self._url.masked)

    async def ping(self) -> None:
        """Check that the server answers (and the credentials are accepted)."""
        await self.run([("PING",)], idempotent=True)

    async def close(self) -> None:
        """Close every pooled connection; idempotent. A later operation opens a new client."""
        client, self._client, self._slots = self._client, None, None
        if client is not None:
            with contextlib.suppress(*DRIVER_ERRORS):  # the connections are being dropped anyway
                await client.aclose()

    async def _execute(self, client: Redis | RedisCluster, commands: Sequence[Command]) -> list[Any]:
        """One round trip (per node, on a Cluster): the replies in order, error replies in place."""
        task = asyncio.current_task()
        cancels = 0 if task is None else task.cancelling()
        if isinstance(client, Redis):
            if self._blocking:
                replies = await self._on_server(client.connection_pool, commands)
            else:
                replies = await self._shared(client.connection_pool, commands)
        elif len(commands) == 1:
            try:
                replies = [await client.execute_command(*commands[0])]
            except ResponseError as exc:  # an error reply, not a failed connection
                replies = [exc]
        else:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            replies = list(await pipe.execute(raise_on_error=False))
        if task is not None and task.cancelling() > cancels:
            # redis-py can finish a call that was cancelled as if it had not been (seen with 8.1): the caller
            # asked to stop, so stop (a stopping worker would otherwise go on waiting).
            raise asyncio.CancelledError
        return replies

    async def _shared(self, pool: ConnectionPool, commands: Sequence[Command]) -> list[Any]:
        """``commands`` on one server, sharing a round trip with the requests of other tasks when one is in flight.

        With nothing in flight (one task) the request goes straight out. Otherwise it queues, and the queue is
        sent as one pipeline on one connection as soon as the round trip in flight is back: each request's
        commands stay together and in order, and each gets its own replies, so ``run``'s retries and NOSCRIPT
        handling stay per request. Sixteen tasks then cost a few large writes and reads instead of sixteen of
        everything (a pooled connection taken and given back, a write, a read): the client's CPU, not the
        server, is what bounds a busy process.
        """
        loop = asyncio.get_running_loop()
        if self._pipe_loop is not loop:  # a queue (and its futures) belongs to one event loop
            self._pipe_loop, self._in_flight, self._queued, self._free = loop, 0, None, None
        if self._queued is None and self._in_flight < _IN_FLIGHT:
            self._in_flight += 1
            try:
                return await self._on_server(pool, commands)
            finally:
                self._round_trip_done()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if self._queued is None:
            self._queued = []
            # A task, not the first caller: cancelling one caller must not strand the others queued with it.
            task = loop.create_task(self._send_queued(pool))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        self._queued.append((commands, future))
        return await future

    def _round_trip_done(self) -> None:
        self._in_flight -= 1
        free, self._free = self._free, None
        if free is not None and not free.done():
            free.set_result(None)

    async def _send_queued(self, pool: ConnectionPool) -> None:
        """Wait for the round trip in flight, then send everything queued by then as one pipeline."""
        loop = asyncio.get_running_loop()
        while self._in_flight >= _IN_FLIGHT:
            if self._free is None:
                self._free = loop.create_future()
            await self._free
        queued = [(commands, future) for commands, future in self._queued or () if not future.done()]
        self._queued = None
        if not queued:
            return
        self._in_flight += 1
        try:
            replies = await self._on_server(pool, [c for commands, _ in queued for c in commands])
        except BaseException as exc:
            for _, future in queued:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._round_trip_done()
        start = 0
        for commands, future in queued:
            end = start + len(commands)
            if not future.done():  # a caller cancelled after the send: its replies are read and dropped
                future.set_result(replies[start:end])
            start = end

    @staticmethod
    async def _on_server(pool: ConnectionPool, commands: Sequence[Command]) -> list[Any]:
        """One server: the batch written at once on one pooled connection, the replies read in order.

        The pool's and the connection's public calls, without the client's per-command layers (its retry
        wrapper, response callbacks, pipeline object): on this hot path those cost a third of a ``set``.
        A Cluster needs the client (it routes each command to its node).
        """
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            # hiredis packs in C what redis-py packs in Python (a sixth of an update's time on the client); the
            # arguments are str, bytes and int, which both encode alike (UTF-8, decimal).
            await conn.send_packed_command(b"".join(map(_pack, commands)), check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # an error reply, read whole: the connection stays in step
                    replies.append(exc)
            return replies
        except BaseException:
            # A half-read batch (error, timeout, cancellation) would leave replies pending on the connection.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    async def run(
        self, commands: Sequence[Command], *, idempotent: bool, read_timeout: float | None = None
    ) -> list[Any]:
        """Send ``commands`` in one batch and return their replies.

        A transient failure (lost connection, timeout, a Cluster in failover) is retried once for an
        ``idempotent`` request, never for another (it may have run). A NOSCRIPT reply loads the scripts and
        re-sends the batch (the batches are built so that is safe). ``read_timeout`` (seconds) bounds the
        whole call instead of the socket timeout: a blocking ``XREAD BLOCK`` needs longer than the block.
        """
        attempt = 0
        while True:
            client = self._client
            if client is None:
                client = self._client = self.new_client()
            slots = self._slots
            if slots is None:
                slots = self._slots = asyncio.Semaphore(self._pool_size)
            try:
                async with slots:
                    if read_timeout is None:
                        replies = await self._execute(client, commands)
                    else:
                        async with asyncio.timeout(read_timeout):
                            replies = await self._execute(client, commands)
            except _TRANSIENT as exc:
                # redis-py's AuthenticationError is a ConnectionError, but sending again cannot mend it.
                if attempt == 0 and idempotent and not isinstance(exc, AuthenticationError):
                    attempt += 1
                    if self._answered:  # a server never reached is one error, said once by the caller
                        _log.warning("%s: %s; reconnecting and sending the request again", self._url.masked, _kind(exc))
                    await asyncio.sleep(_RETRY_PAUSE)
                    continue
                raise self.error(exc) from exc
            except RedisError as exc:
                raise self.error(exc) from exc
            for reply in replies:
                if isinstance(reply, NoScriptError) and attempt < 2:
                    await self.load_scripts()
                    attempt = 2
                    break
                if isinstance(reply, _TRANSIENT) and attempt == 0 and idempotent:
                    attempt = 1
                    _log.warning("%s: %s; sending the request again", self._url.masked, _kind(reply))
                    await asyncio.sleep(_RETRY_PAUSE)
                    break
                if isinstance(reply, BaseException):
                    raise self.error(reply) from reply
            else:
                self._answered = True
                return replies

    async def load_scripts(self) -> None:
        """Load every script (on every master of a Cluster: the replies are checked, nothing is left out)."""
        client = self._client
        if client is None:
            client = self._client = self.new_client()
        try:
            if isinstance(client, RedisCluster):
                await client.initialize()
                # The nodes themselves: redis-py 8.1 ignores the PRIMARIES flag once the client is initialized.
                primaries = client.get_primaries()
                for script in SCRIPTS:
                    await client.execute_command("SCRIPT", "LOAD", script.text, target_nodes=primaries)
            else:
                await self._execute(client, [("SCRIPT", "LOAD", s.text) for s in SCRIPTS])
        except DRIVER_ERRORS as exc:
            raise self.error(exc, "loading the Lua scripts") from exc

    async def one(self, command: Command, *, idempotent: bool) -> Any:
        return (await self.run([command], idempotent=idempotent))[0]

    async def block(self, command: Command, *, wait: float) -> Any:
        """Run one blocking read (``XREAD BLOCK``) that the server may hold ``wait`` seconds.

        The call is bounded a margin past the block, so neither a short ``socket_timeout`` nor a slow reply
        cuts it off. A cancelled read disconnects its connection (redis-py does that to any half-read reply),
        so the pool never hands out a connection with a pending reply.
        """
        return (await self.run([command], idempotent=True, read_timeout=wait + _BLOCK_MARGIN))[0]
