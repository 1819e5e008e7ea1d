"""The Redis key layouts (SPEC §7). ``tagged`` (the default), for the default prefix ``motia:state:``:

* ``motia:state:{<scope>}:<key>`` -- a string holding the entry's JSON text, with a native ``PX`` expiry.
  ``%`` and ``}`` in the scope are percent-encoded (``%25``, ``%7D``) so the first ``}`` always ends the
  scope and the braces form a Cluster hash tag: every key of a scope is in one slot.
* ``motia:state:{<scope>}`` -- the scope's index, a sorted set: member = key, score = expiry in epoch
  milliseconds (``inf`` for none), in the scope's slot, so a script updates it atomically with the entry.
* ``motia:state:__scopes__`` -- the registry of scopes (a set) for ``list_groups``/``cleanup``.

The change feed (SPEC §10; none of it with ``changes: off``), written by the same scripts as the entries:

* ``motia:state:{<scope>}#changes`` -- the scope's changes, a stream in the scope's slot: entry ID
  ``<revision>-0``, fields ``e`` event, ``k`` key, ``o``/``n`` old/new JSON text (absent for no value), ``t``
  commit time (server epoch ms). ``#`` never follows the tag in an entry (``}:``) or index (``}`` at the end)
  key, and the tag has no ``}``, so it collides with neither.
* ``motia:state:__changes__`` -- every scope's changes, one stream, the same fields plus ``s`` the scope.
* ``motia:state:__revision__`` -- the revision counter (INCR once per change).
* ``motia:state:__changes_scopes__`` -- the registry of scope streams, a sorted set: member = the scope's tag,
  score = the stream's first retained revision, so compaction finds the streams to trim.
* ``motia:state:__changes_floor__`` -- the highest revision compaction removed (absent = 0).

Durable triggers (SPEC §11; :mod:`.triggers`), written only once a trigger runs. Every key of one trigger shares
the hash tag ``{__trigger__:<name>}`` (the name escaped as a scope is), so each trigger script touches one slot:

* ``motia:state:{__trigger__:<name>}#meta`` -- a hash: ``start``, ``partitions``, ``handled``, ``skipped``.
* ``…#parts`` -- a hash of the partitions: ``<i>:position``, ``<i>:done`` (revisions done above the
  position, comma-separated), ``<i>:owner`` and ``<i>:until`` (lease end, server epoch ms; both absent = free).
* ``…#workers`` -- a sorted set: member = worker, score = alive-until (server epoch ms).
* ``…#parked`` -- a hash: revision -> the parked change's JSON text (values exactly as stored).
* ``…#retry`` -- a sorted set of the parked revisions asked to be retried (score = revision).
* ``motia:state:__triggers__`` -- the registry of trigger names (a set), for ``status()``.

The suffixes start with ``#`` after the tag, like a scope's stream, and differ from ``#changes``: a trigger's
keys collide with no entry (``}:``), index or stream key, whatever the scopes and trigger names.

``motia`` (:class:`MotiaLayout`), the layout of Motia's own Node Redis state adapter: ``motia:state:<scope>:<key>``
holding the JSON text, and nothing else under the prefix. Motia reads a trace id up to the first ``:``, so a
scope holding ``:`` is stored with ``:`` and ``%`` percent-encoded (and so is one holding a ``%25`` or ``%3A``
that would read as an escape); any other scope, every trace id, is stored as it is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final, NamedTuple

__all__ = ["Layout", "MotiaLayout", "TriggerKeys", "expiry", "glob_escape", "ttl_ms"]


_ESCAPED: Final = re.compile(r"%(25|3[Aa])")


def _tag(scope: str) -> str:
    """The scope as written inside the braces: only ``%`` and ``}`` are percent-encoded."""
    if "%" in scope or "}" in scope:
        return scope.replace("%", "%25").replace("}", "%7D")
    return scope


class Layout:
    """Where a scope's keys live under one prefix."""

    __slots__ = ("changes", "changes_floor", "changes_scopes", "prefix", "registry", "revision", "triggers")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.registry = prefix + "__scopes__"
        self.revision = prefix + "__revision__"
        self.changes = prefix + "__changes__"
        self.changes_scopes = prefix + "__changes_scopes__"
        self.changes_floor = prefix + "__changes_floor__"
        self.triggers = prefix + "__triggers__"

    @staticmethod
    def tag(scope: str) -> str:
        """The scope as written inside the braces (its registry member in ``changes_scopes``)."""
        return _tag(scope)

    def stream(self, scope: str) -> str:
        """The scope's change stream, ``<prefix>{<scope>}#changes``, in the scope's slot."""
        return self.prefix + "{" + _tag(scope) + "}#changes"

    def stream_of_tag(self, tag: str) -> str:
        """The change stream of the scope whose tag is ``tag`` (a ``changes_scopes`` member)."""
        return self.prefix + "{" + tag + "}#changes"

    def recording(self, scope: str) -> tuple[tuple[str, str, str, str], tuple[str, str, str]]:
        """The extra KEYS and ARGV of a script recording ``scope``'s changes (see ``scripts.recorder``)."""
        tag = _tag(scope)
        keys = (self.revision, self.prefix + "{" + tag + "}#changes", self.changes, self.changes_scopes)
        return keys, ("1", scope, tag)

    def index(self, scope: str) -> str:
        """The scope's index (a sorted set), ``<prefix>{<scope>}``; also the hash tag of its entries."""
        return self.prefix + "{" + _tag(scope) + "}"

    def entries(self, scope: str) -> str:
        """What every entry key of the scope starts with: ``<prefix>{<scope>}:``."""
        return self.prefix + "{" + _tag(scope) + "}:"

    def entry(self, scope: str, key: str) -> str:
        """The string holding ``scope``/``key``: ``<prefix>{<scope>}:<key>``."""
        return self.prefix + "{" + _tag(scope) + "}:" + key

    def trigger(self, name: str) -> TriggerKeys:
        """The keys of trigger ``name``, all in the slot of ``{__trigger__:<name>}``."""
        base = self.prefix + "{__trigger__:" + _tag(name) + "}#"
        # A trigger name is any str without NUL (a lone surrogate included): passed through as bytes.
        return TriggerKeys(*(_bytes(base + part) for part in ("meta", "parts", "workers", "parked", "retry")))


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class TriggerKeys(NamedTuple):
    """The Redis keys of one trigger (see the module docstring)."""

    meta: bytes
    parts: bytes
    workers: bytes
    parked: bytes
    retry: bytes


def glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN/KEYS MATCH pattern: ``* ? [ ] \\`` never widen a match."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class MotiaLayout:
    """``<prefix><scope>:<key>``, as Motia's Node adapter writes it; listing scans the prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @staticmethod
    def _scope(scope: str) -> str:
        # Only where reading back needs it: a ':' (Motia splits the trace id there), or a '%' that would read as
        # an escape. A scope like '100%' stays as Motia writes it.
        if ":" in scope or (("%" in scope) and _ESCAPED.search(scope)):
            return scope.replace("%", "%25").replace(":", "%3A")
        return scope

    def entries(self, scope: str) -> str:
        """What every entry key of the scope starts with: ``<prefix><scope>:``."""
        return self.prefix + self._scope(scope) + ":"

    def entry(self, scope: str, key: str) -> str:
        """The string holding ``scope``/``key``."""
        return self.prefix + self._scope(scope) + ":" + key

    def scope_pattern(self, scope: str) -> str:
        """The MATCH pattern of the scope's entries (glob characters escaped)."""
        return glob_escape(self.entries(scope)) + "*"

    def all_pattern(self) -> str:
        """The MATCH pattern of every entry under the prefix."""
        return glob_escape(self.prefix) + "*"

    def split(self, full: bytes) -> tuple[str, str] | None:
        """(scope, key) of a Redis key under the prefix, or None for one that is no entry of this layout."""
        text = full.decode("utf-8", "surrogateescape")[len(self.prefix) :]
        scope, colon, key = text.partition(":")
        if not colon or not scope or not key:
            return None
        if "%" in scope:
            scope = _ESCAPED.sub(lambda m: "%" if m[1] == "25" else ":", scope)
        return scope, key


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
