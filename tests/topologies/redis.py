"""The Redis topologies of SPEC §12 for the tests: a Redis Cluster and a TLS Redis with ACL users.

The servers come from ``.ci/services/redis_cluster.sh`` and ``.ci/services/redis_tls.sh`` (both started by
``bash .ci/topologies start``, whose ``env`` prints the URLs below). Unset variables default to what those
scripts make with their default ports. Under CI=true a server that does not answer fails the test; elsewhere
it skips, naming the command that starts it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from motia_state import StateManager
from tests.services import IN_CI, answers

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / ".ci" / "services" / "redis_cluster.sh"
TLS_SCRIPT = REPO / ".ci" / "services" / "redis_tls.sh"

CLUSTER_PORT = int(os.environ.get("MOTIA_STATE_TEST_REDIS_CLUSTER_PORT", "7000"))
CLUSTER_URL = os.environ.get(
    "MOTIA_STATE_TEST_REDIS_CLUSTER_URL",
    f"redis+cluster://127.0.0.1:{CLUSTER_PORT},127.0.0.1:{CLUSTER_PORT + 1},127.0.0.1:{CLUSTER_PORT + 2}/",
)

TLS_DIR = Path(os.environ.get("MOTIA_STATE_TEST_REDIS_TLS_DIR", "/tmp/motia-state-services/redis-tls"))
_TLS_URL_SET = os.environ.get("MOTIA_STATE_TEST_REDIS_TLS_URL")
TLS_PORT = (urlsplit(_TLS_URL_SET).port if _TLS_URL_SET else None) or int(
    os.environ.get("MOTIA_STATE_TLS_PORT", "6390")
)
# Test-only passwords, fixed by .ci/services/redis_tls.sh.
TLS_PASSWORDS = {
    "default": "motia-tls-admin",  # admin
    "motia": "motia-tls-pw",  # keys motia:state:*, +@all -@dangerous
    "motia-minimal": "motia-tls-minimal",  # keys motia:state:*, only the commands docs/topologies.md lists
    "motia-limited": "motia-tls-limited",  # like motia, without EVAL/EVALSHA
}


def tls_url(user: str, password: str | None = None, *, host: str = "127.0.0.1", query: str | None = None) -> str:
    """A URL of the TLS server for ``user`` (its test password unless given), by default trusting the test CA."""
    password = TLS_PASSWORDS[user] if password is None else password
    query = f"ssl_ca_certs={TLS_DIR / 'ca.crt'}" if query is None else query
    return f"rediss://{user}:{password}@{host}:{TLS_PORT}/0" + (f"?{query}" if query else "")


TLS_URL = _TLS_URL_SET or tls_url("motia")
TLS_ADMIN_URL = os.environ.get("MOTIA_STATE_TEST_REDIS_TLS_ADMIN_URL", tls_url("default"))
TLS_LIMITED_URL = os.environ.get("MOTIA_STATE_TEST_REDIS_TLS_LIMITED_URL", tls_url("motia-limited"))

_CLUSTER_ENV = "" if CLUSTER_PORT == 7000 else f"MOTIA_STATE_CLUSTER_PORT={CLUSTER_PORT} "
_TLS_ENV = "" if TLS_PORT == 6390 else f"MOTIA_STATE_TLS_PORT={TLS_PORT} "
_START = {
    "cluster": f"{_CLUSTER_ENV}bash {CLUSTER_SCRIPT.relative_to(REPO)} start (or: bash .ci/topologies start)",
    "tls": f"{_TLS_ENV}bash {TLS_SCRIPT.relative_to(REPO)} start (or: bash .ci/topologies start)",
}


def cluster_seeds() -> list[tuple[str, int]]:
    """The (host, port) seed nodes named by the cluster URL."""
    netloc = urlsplit(CLUSTER_URL).netloc.rpartition("@")[2]
    seeds = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        seeds.append((host.strip("[]"), int(port)))
    return seeds


def unavailable(service: str, problem: str) -> None:
    """Fail (CI=true) or skip (elsewhere) because the ``service`` topology is not there."""
    reason = f"the Redis {service} test server {problem}; start it with: {_START[service]}"
    if IN_CI:
        pytest.fail(f"CI=true requires the Redis {service}: {reason}", pytrace=False)
    pytest.skip(reason)


def require_cluster() -> None:
    seeds = cluster_seeds()
    if not any(answers(host, port) for host, port in seeds):
        unavailable("cluster", f"is not answering on {', '.join(f'{h}:{p}' for h, p in seeds)}")


def require_tls() -> None:
    if not (TLS_DIR / "ca.crt").is_file() or not answers("127.0.0.1", TLS_PORT):
        unavailable("tls", f"is not answering on 127.0.0.1:{TLS_PORT} (or {TLS_DIR}/ca.crt is missing)")


def cluster_client() -> Any:
    """A plain redis-py ``RedisCluster`` (asyncio) on the seed nodes; the caller closes it (``aclose``)."""
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_seeds()],
        socket_connect_timeout=2,
        socket_timeout=5,
    )


async def flush_cluster() -> None:
    """FLUSHALL on every primary of the cluster."""
    from redis.exceptions import RedisError

    client = cluster_client()
    try:
        await client.initialize()
        # The primaries as nodes, not the PRIMARIES flag: redis-py 8.1 ignores a flag there once initialized.
        await client.flushall(target_nodes=client.get_primaries())
    except RedisError as exc:
        unavailable("cluster", f"does not take FLUSHALL on its primaries ({type(exc).__name__}: {exc})")
    finally:
        await client.aclose()


async def make_redis_cluster(tmp_path: Path, **options: Any) -> StateManager:
    """A fresh store on the Redis Cluster (every primary flushed first)."""
    require_cluster()
    await flush_cluster()
    return StateManager.from_url(CLUSTER_URL, **options)


async def flush_tls() -> None:
    """FLUSHDB on the TLS server's db 0, as the admin (default) user."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(TLS_ADMIN_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        await client.flushdb()
    except (RedisError, OSError) as exc:
        unavailable("tls", f"does not take FLUSHDB as its admin user ({type(exc).__name__})")
    finally:
        await client.aclose()


async def make_redis_tls(tmp_path: Path, **options: Any) -> StateManager:
    """A fresh store on the TLS Redis, as the ACL user ``motia`` (db flushed first by the admin user)."""
    require_tls()
    await flush_tls()
    return StateManager.from_url(TLS_URL, **options)


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, within: float = 20.0) -> None:
    """Wait until ``check()`` is true; fail naming ``what`` after ``within`` seconds (a bound, not a measure)."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = check()
                if await result if isinstance(result, Awaitable) else result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None
