"""The Redis key layout (SPEC §7), for the default prefix ``motia:state:``:

* ``motia:state:{<scope>}:<key>`` -- a string holding the entry's JSON text, with a native ``PX`` expiry.
  ``%`` and ``}`` in the scope are percent-encoded (``%25``, ``%7D``) so the first ``}`` always ends the
  scope and the braces form a Cluster hash tag: every key of a scope is in one slot.
* ``motia:state:{<scope>}`` -- the scope's index, a sorted set: member = key, score = expiry in epoch
  milliseconds (``inf`` for none), in the scope's slot, so a script updates it atomically with the entry.
* ``motia:state:__scopes__`` -- the registry of scopes (a set) for ``list_groups``/``cleanup``.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["Layout", "expiry", "ttl_ms"]


def _tag(scope: str) -> str:
    """The scope as written inside the braces: only ``%`` and ``}`` are percent-encoded."""
    if "%" in scope or "}" in scope:
        return scope.replace("%", "%25").replace("}", "%7D")
    return scope


class Layout:
    """Where a scope's keys live under one prefix."""

    __slots__ = ("prefix", "registry")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.registry = prefix + "__scopes__"

    def index(self, scope: str) -> str:
        """The scope's index (a sorted set), ``<prefix>{<scope>}``; also the hash tag of its entries."""
        return self.prefix + "{" + _tag(scope) + "}"

    def entries(self, scope: str) -> str:
        """What every entry key of the scope starts with: ``<prefix>{<scope>}:``."""
        return self.prefix + "{" + _tag(scope) + "}:"

    def entry(self, scope: str, key: str) -> str:
        """The string holding ``scope``/``key``: ``<prefix>{<scope>}:<key>``."""
        return self.prefix + "{" + _tag(scope) + "}:" + key


def ttl_ms(ttl: float | None) -> str:
    """A TTL in whole milliseconds for PX (at least 1), or '' for none."""
    if ttl is None:
        return ""
    return str(max(1, round(ttl * 1000)))


def expiry(score: bytes | float | str) -> datetime | None:
    """An index score (epoch ms, ``inf`` for never) as an aware UTC datetime, or None."""
    value = float(score)
    if value == float("inf"):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)
