"""StateManager: the public async API. Checks arguments, applies defaults, delegates to an adapter."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self, TypeVar, overload

from .adapter import SetResult, StateAdapter, StateItem
from .changes import CHANGES_OFF, Change, ChangeStream
from .errors import StateConfigError, StateError, StateValueError
from .ops import Op, apply_ops, parse_filters, parse_ops
from .telemetry import OPERATION, Described
from .telemetry import SEEN as _SEEN
from .telemetry import TRACES as _TR
from .telemetry import current as current_telemetry
from .values import _INT_PRETEST_BITS, check_name, check_ttl, check_value, rebuild

if TYPE_CHECKING:  # the trigger engine is imported when a trigger is registered or run, not by every CLI call
    from .triggers import Trigger, TriggerRun

__all__ = ["StateManager"]

T = TypeVar("T")
H = TypeVar("H", bound=Callable[[Change], Any])

# Seconds allowed for dropping the connections of a previous event loop before reconnecting.
_FOREIGN_CLOSE_TIMEOUT = 2.0


class StateManager:
    """Scoped JSON state with optional expiry, on any :class:`StateAdapter`.

    >>> state = StateManager.from_url("memory://")
    >>> await state.set("trace-1", "booking", {"status": "pending"})
    """

    def __init__(self, adapter: StateAdapter, *, ttl: float | None = None, telemetry_scopes: bool = False) -> None:
        if not isinstance(adapter, StateAdapter):
            raise TypeError(f"StateManager needs a StateAdapter, got {type(adapter).__name__}")
        if type(telemetry_scopes) is not bool:
            raise StateConfigError(f"telemetry_scopes must be True or False, got {telemetry_scopes!r}")
        self._adapter = adapter
        self._default_ttl = None if ttl is None else check_ttl(ttl)
        # What every span and metric of this store says about it (SPEC §13); computed once.
        self._telemetry = Described(adapter.telemetry_attributes(), telemetry_scopes)
        # A store holding only values that passed check_value (the memory store): an update's result then needs
        # the check only when its ops may have put something unchecked into it (_keeps_checked).
        self._checked_store = getattr(adapter, "holds_checked_values", False) is True
        # The event loop the adapter's connections belong to (None = not connected). Pools of asyncpg
        # and redis-py are bound to one loop, so first use on another loop (a second asyncio.run(),
        # a test framework's fresh loop) reconnects instead of failing with "Event loop is closed".
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        # Open watches, ended by close().
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()
        self._triggers: dict[str, Trigger] = {}
        self._trigger_runs: set[TriggerRun] = set()

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> StateManager:
        """Open a store from a URL: ``sqlite:///path``, ``postgresql://…``, ``redis://…``, ``memory://``."""
        from .config import settings_from_url

        return settings_from_url(url, options).build(cls)

    @classmethod
    def from_config(cls, path: str | Path | None = None, **options: Any) -> StateManager:
        """Open the store named by ``config.yml`` (block ``state:``), ``MOTIA_STATE_URL``, or the SQLite default."""
        from .config import load_settings

        return load_settings(path, options).build(cls)

    @property
    def adapter(self) -> StateAdapter:
        """The backend behind this manager."""
        return self._adapter

    @property
    def telemetry_scopes(self) -> bool:
        """Whether spans carry the scope (``motia_state.scope``); never on by default (SPEC §13)."""
        return self._telemetry.scopes

    @property
    def default_ttl(self) -> float | None:
        """TTL in seconds applied to writes that name none (None = no expiry)."""
        return self._default_ttl

    def __repr__(self) -> str:
        return f"StateManager({self._adapter!r})"

    # --- lifecycle -----------------------------------------------------------------------------

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        if self._connect_lock is None or self._lock_loop is not loop:
            self._connect_lock, self._lock_loop = asyncio.Lock(), loop
        async with self._connect_lock:
            if self._loop is loop:
                return
            if self._loop is not None:
                await self._drop_foreign_connections()
            try:
                await self._adapter.connect()
            except Exception as exc:
                raise self._translate(exc) from exc
            self._loop = loop
            # Operations look at the tracer provider only (one comparison); a meter provider set since is seen here.
            current_telemetry()

    async def connect(self) -> None:
        """Connect (and migrate, per the store's ``migrate`` setting) now instead of on first use."""
        if self._loop is not asyncio.get_running_loop():
            await self._connect()

    async def _drop_foreign_connections(self) -> None:
        # Connections of another (often closed) loop cannot be used, nor always closed, from this one.
        self._loop = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_FOREIGN_CLOSE_TIMEOUT):
                await self._adapter.close()

    async def close(self) -> None:
        """Release pools and connections, end every open watch and stop running triggers (their in-flight
        handlers get a grace period). Idempotent; a later call reconnects."""
        runs = list(self._trigger_runs)
        for run in runs:
            run.stop()
        if runs and self._loop is asyncio.get_running_loop():
            from .triggers import GRACE

            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GRACE + 5):
                    for run in runs:
                        await run.finished.wait()
        for stream in list(self._streams):
            stream.end()
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            await self._drop_foreign_connections()
            return
        self._loop = None
        try:
            await self._adapter.close()
        except Exception as exc:
            raise self._translate(exc) from exc

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, StateError | NotImplementedError):
            return exc
        translated = self._adapter.translate_error(exc)
        return exc if translated is None else translated

    def _raise(self, exc: Exception) -> NoReturn:
        err = self._translate(exc)
        if err is exc:
            raise exc
        raise err from exc

    async def _connected_adapter(self) -> StateAdapter:
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        return self._adapter

    def _check_changes(self, *, every_scope: bool = False) -> None:
        """StateConfigError when the store records no changes (or, for ``every_scope``, keeps no order of all
        scopes' changes: a Redis Cluster)."""
        if getattr(self._adapter, "changes_off", False):
            raise StateConfigError(CHANGES_OFF)
        reason = getattr(self._adapter, "changes_unsupported", None)
        if reason:
            raise StateConfigError(reason)
        if every_scope:
            reason = getattr(self._adapter, "all_scopes_unsupported", None)
            if reason:
                raise StateConfigError(reason)

    def _ttl(self, ttl: float | None, scope: str, key: str | None = None) -> float | None:
        return self._default_ttl if ttl is None else check_ttl(ttl, scope, key)

    # --- single entries ------------------------------------------------------------------------

    @overload
    async def get(self, scope: str, key: str) -> Any: ...
    @overload
    async def get(self, scope: str, key: str, *, type: builtins.type[T]) -> T | None: ...
    @overload
    async def get(self, scope: str, key: str, *, type: Any) -> Any: ...

    async def get(self, scope: str, key: str, *, type: Any = None) -> Any:
        """The value at ``scope``/``key`` (rebuilt as ``type`` if given), or None."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("get", self._telemetry, scope, self.get(scope, key, type=type))
        check_name("scope", scope)
        check_name("key", key)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            value = await self._adapter.get(scope, key)
        except Exception as exc:
            self._raise(exc)
        if type is None or value is None:
            return value
        return rebuild(value, type)

    async def set(self, scope: str, key: str, value: Any, *, ttl: float | None = None) -> SetResult:
        """Store ``value``; return the old and new values (old read atomically with the write)."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("set", self._telemetry, scope, self.set(scope, key, value, ttl=ttl))
        check_name("scope", scope)
        check_name("key", key)
        stored = check_value(value, scope, key)
        expiry = self._ttl(ttl, scope, key)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            old = await self._adapter.set_entry(scope, key, stored, expiry)
        except Exception as exc:
            self._raise(exc)
        return SetResult(old, stored)

    async def delete(self, scope: str, key: str) -> Any:
        """Remove the entry; return its old value or None."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("delete", self._telemetry, scope, self.delete(scope, key))
        check_name("scope", scope)
        check_name("key", key)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            return await self._adapter.delete_entry(scope, key)
        except Exception as exc:
            self._raise(exc)

    async def update(self, scope: str, key: str, ops: Iterable[Mapping[str, Any]]) -> SetResult:
        """Apply update operations atomically, all or nothing (SPEC §5); keeps the entry's expiry."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("update", self._telemetry, scope, self.update(scope, key, ops))
        check_name("scope", scope)
        check_name("key", key)
        parsed = parse_ops(ops, scope, key)
        if self._checked_store and _keeps_checked(parsed):

            def apply(old: Any) -> Any:
                new = apply_ops(old, parsed)
                return check_value(new, scope, key) if _long_results(new, parsed) else new

        else:

            def apply(old: Any) -> Any:
                return check_value(apply_ops(old, parsed), scope, key)

        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            old, new = await self._adapter.update_entry(scope, key, apply, self._default_ttl)
        except Exception as exc:
            self._raise(exc)
        return SetResult(old, new)

    async def ttl(self, scope: str, key: str) -> float | None:
        """Seconds left before the entry expires; None for no expiry or no entry."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("ttl", self._telemetry, scope, self.ttl(scope, key))
        check_name("scope", scope)
        check_name("key", key)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            return await self._adapter.ttl(scope, key)
        except Exception as exc:
            self._raise(exc)

    # --- scopes --------------------------------------------------------------------------------

    async def clear(self, scope: str) -> int:
        """Remove every entry of exactly ``scope``; return how many."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("clear", self._telemetry, scope, self.clear(scope))
        check_name("scope", scope)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            removed = await self._adapter.clear(scope)
        except Exception as exc:
            self._raise(exc)
        return removed if isinstance(removed, int) else 0

    async def cleanup(self) -> int:
        """Delete expired entries; return how many. Safe to run from many processes at once."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("cleanup", self._telemetry, None, self.cleanup())
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            removed = await self._adapter.cleanup()
        except Exception as exc:
            self._raise(exc)
        return removed if isinstance(removed, int) else 0

    @overload
    async def list(self, scope: str) -> builtins.list[Any]: ...
    @overload
    async def list(self, scope: str, *, type: builtins.type[T]) -> builtins.list[T]: ...
    @overload
    async def list(self, scope: str, *, type: Any) -> builtins.list[Any]: ...

    async def list(self, scope: str, *, type: Any = None) -> builtins.list[Any]:
        """The live values of ``scope``, ordered by key (each rebuilt as ``type`` if given)."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("list", self._telemetry, scope, self.list(scope, type=type))
        check_name("scope", scope)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            values = await self._adapter.values(scope)
        except Exception as exc:
            self._raise(exc)
        return values if type is None else [rebuild(v, type) for v in values]

    async def get_group(self, scope: str) -> builtins.list[Any]:
        """Alias of :meth:`list`, for Motia SDKs whose state protocol calls it ``get_group``."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("get_group", self._telemetry, scope, self.get_group(scope))
        return await self.list(scope)

    async def keys(self, scope: str) -> builtins.list[str]:
        """The live keys of ``scope``, sorted by code point."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("keys", self._telemetry, scope, self.keys(scope))
        check_name("scope", scope)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            return sorted(await self._adapter.keys(scope))
        except Exception as exc:
            self._raise(exc)

    async def list_groups(self) -> builtins.list[str]:
        """Every scope holding at least one live entry, sorted by code point."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("list_groups", self._telemetry, None, self.list_groups())
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            return sorted(set(await self._adapter.list_groups()))
        except Exception as exc:
            self._raise(exc)

    async def items(
        self,
        scope: str | None = None,
        *,
        filters: Iterable[Mapping[str, Any]] = (),
        limit: int | None = None,
        after: str | None = None,
        type: Any = None,
    ) -> builtins.list[StateItem]:
        """Live entries of ``scope`` (or every scope) passing all ``filters``, ordered by scope then key.

        At most ``limit`` entries. ``after`` is a key: only entries of ``scope`` whose key sorts strictly
        after it (code point order) are returned, so a scope of any size can be read page by page with
        memory bounded by one page::

            page = await state.items("orders", limit=500)
            while page:
                ...
                page = await state.items("orders", limit=500, after=page[-1].key)

        ``after`` needs a ``scope`` (a :class:`StateValueError` otherwise) and follows the key rules.
        ``type`` rebuilds each item's value as that type (a dataclass, pydantic model, TypedDict...).
        """
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation(
                "items",
                self._telemetry,
                scope,
                self.items(scope, filters=filters, limit=limit, after=after, type=type),
            )
        if scope is not None:
            check_name("scope", scope)
        if after is not None:
            if scope is None:
                raise StateValueError("items(after=...) pages through one scope: pass a scope as well")
            check_name("after", after)
        parsed = parse_filters(filters)
        if limit is not None and (builtins.type(limit) is not int or limit < 0):
            raise StateValueError(f"limit must be an int >= 0 or None, got {limit!r}")
        if limit == 0:
            return []
        if after is not None and not _accepts_after(builtins.type(self._adapter)):
            name = builtins.type(self._adapter).__name__
            raise NotImplementedError(
                f"{name}.items does not support paging: update its signature to"
                " items(self, scope, filters, limit, *, after=None) and return only keys after `after`"
            )
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            if after is None:
                # Not passed at all, so custom adapters written before paging existed keep working.
                found = await self._adapter.items(scope, parsed, limit)
            else:
                found = await self._adapter.items(scope, parsed, limit, after=after)
        except Exception as exc:
            self._raise(exc)
        found = _unique(found)
        if type is not None:
            found = [StateItem(i.scope, i.key, rebuild(i.value, type), i.expires_at) for i in found]
        return found

    # --- batches -------------------------------------------------------------------------------

    async def get_many(self, scope: str, keys: Iterable[str], *, type: Any = None) -> dict[str, Any]:
        """Values of ``keys`` in ``scope`` (rebuilt as ``type`` if given); missing keys are left out."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("get_many", self._telemetry, scope, self.get_many(scope, keys, type=type))
        check_name("scope", scope)
        wanted = _names(keys)
        if not wanted:
            return {}
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            found = await self._adapter.get_many(scope, wanted)
        except Exception as exc:
            self._raise(exc)
        if type is None:
            return {k: found[k] for k in wanted if k in found}
        return {k: rebuild(found[k], type) for k in wanted if k in found}

    async def set_many(self, scope: str, mapping: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Write every entry of ``mapping`` in one transaction, all or nothing."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("set_many", self._telemetry, scope, self.set_many(scope, mapping, ttl=ttl))
        check_name("scope", scope)
        if not isinstance(mapping, Mapping):
            raise StateValueError(f"set_many needs a mapping of key -> value, got {type(mapping).__name__}")
        stored = {check_name("key", k): check_value(v, scope, k) for k, v in mapping.items()}
        expiry = self._ttl(ttl, scope)
        if not stored:
            return
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            await self._adapter.set_many(scope, stored, expiry)
        except Exception as exc:
            self._raise(exc)

    async def delete_many(self, scope: str, keys: Iterable[str]) -> int:
        """Remove ``keys`` from ``scope``; return how many existed."""
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("delete_many", self._telemetry, scope, self.delete_many(scope, keys))
        check_name("scope", scope)
        wanted = _names(keys)
        if not wanted:
            return 0
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            return await self._adapter.delete_many(scope, wanted)
        except Exception as exc:
            self._raise(exc)

    # --- the change feed ---------------------------------------------------------------------------

    async def revision(self, scope: str | None = None) -> int:
        """The revision of the last committed change (of ``scope``): ``watch(since=...)`` it to miss nothing.

        0 when nothing was recorded yet. Read the state first, then this, then watch from it (SPEC §10).
        """
        if (
            _TR._TRACER_PROVIDER is not _SEEN.tracer
            and (tel := current_telemetry()) is not None
            and OPERATION.get() is None
        ):
            return await tel.operation("revision", self._telemetry, scope, self.revision(scope))
        if scope is not None:
            check_name("scope", scope)
        self._check_changes(every_scope=scope is None)
        if self._loop is not asyncio.get_running_loop():
            await self._connect()
        try:
            return await self._adapter.revision(scope)
        except Exception as exc:
            self._raise(exc)

    def watch(self, scope: str | None = None, *, key: str | None = None, since: int | None = None) -> ChangeStream:
        """Follow the store's changes (of ``scope``, of ``key`` in it) as they commit, in revision order.

        ``since`` (a revision): first every retained change after it, then the live ones; without it, the
        changes after the moment the watch opens. Use as ``async with state.watch(...) as changes:
        async for change in changes: ...``. See SPEC §10 for the promises.
        """
        if scope is not None:
            check_name("scope", scope)
        if key is not None:
            if scope is None:
                raise StateValueError("watch(key=...) follows one key of one scope: pass the scope as well")
            check_name("key", key)
        if since is not None and (builtins.type(since) is not int or since < 0):
            raise StateValueError(f"since must be a revision (an int >= 0) or None, got {since!r}")
        self._check_changes(every_scope=scope is None)
        return ChangeStream(self, scope, key, since)

    # --- triggers ------------------------------------------------------------------------------

    def on_change(
        self,
        name: str,
        *,
        scope: str | None = None,
        key: str | None = None,
        events: Iterable[str] | None = None,
        condition: Callable[[Change], Any] | None = None,
        start: str = "now",
        concurrency: int = 16,
        max_attempts: int = 5,
        lease: float = 30,
    ) -> Callable[[H], H]:
        """Register a durable trigger: the decorated ``async def handler(change)`` runs once per matching change,
        in one of the processes running ``run_triggers()`` (SPEC §11).

        ``name`` is durable (the progress is stored under it); ``scope``/``key``/``events``/``condition``
        choose the changes; ``start="beginning"`` also handles every retained change from before the
        trigger's first run. Changes of one key run one at a time in order; up to ``concurrency`` keys at
        once per process; a failing handler is retried ``max_attempts`` times, then parked.
        """
        from .triggers import Trigger, check_trigger_args

        self._check_changes()
        chosen = check_trigger_args(name, scope, key, events, start, concurrency, max_attempts, lease)

        def register(handler: H) -> H:
            if not callable(handler):
                raise TypeError(f"on_change({name!r}) decorates a function taking a Change, got {handler!r}")
            if name in self._triggers:
                raise StateValueError(f"a trigger named {name!r} is already registered on this StateManager")
            self._triggers[name] = Trigger(
                name,
                handler,
                scope,
                key,
                chosen,
                condition,
                "beginning" if start == "beginning" else "now",
                concurrency,
                max_attempts,
                float(lease),
            )
            return handler

        return register

    @property
    def triggers(self) -> tuple[Trigger, ...]:
        """The triggers registered with :meth:`on_change`."""
        return tuple(self._triggers.values())

    async def run_triggers(self) -> None:
        """Run the registered triggers until cancelled or :meth:`close`; in-flight handlers finish first."""
        from .triggers import run_all

        self._check_changes(every_scope=any(t.scope is None for t in self._triggers.values()))
        if not self._triggers:
            raise StateConfigError(
                "no trigger is registered on this store: decorate a handler with @state.on_change(...)"
            )
        try:
            await run_all(self, list(self._triggers.values()))
        except (StateError, NotImplementedError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self._raise(exc)


# Adapter class -> whether its items() takes ``after``; looked up once per class.
_after_support: dict[type[StateAdapter], bool] = {}


def _accepts_after(adapter_type: type[StateAdapter]) -> bool:
    """Whether ``adapter_type.items`` takes the ``after`` keyword (or any keyword)."""
    known = _after_support.get(adapter_type)
    if known is not None:
        return known
    try:
        params = inspect.signature(adapter_type.items).parameters
    except (TypeError, ValueError):  # not introspectable: let the call itself decide
        supported = True
    else:
        after = params.get("after")
        supported = (after is not None and after.kind is not inspect.Parameter.POSITIONAL_ONLY) or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
    _after_support[adapter_type] = supported
    return supported


def _unique(items: builtins.list[StateItem]) -> builtins.list[StateItem]:
    """``items`` without a repeated (scope, key): a custom adapter may report a scope twice."""
    seen: set[tuple[str, str]] = set()
    out: builtins.list[StateItem] = []
    for item in items:
        pair = (item.scope, item.key)
        if pair not in seen:
            seen.add(pair)
            out.append(item)
    return out if len(out) != len(items) else items


# Ops that keep a checked value checked: each puts a number, an already checked scalar or nothing at a short
# path (far from the depth limit) of field names the check would pass without looking twice.
_KEEPING_OPS = frozenset({"increment", "decrement", "remove", "set", "append"})
_SHORT_PATH = 32


def _keeps_checked(parsed: builtins.list[Op]) -> bool:
    """Whether applying ``parsed`` to a checked value gives a checked one (but for _long_results)."""
    for op in parsed:
        if op.type not in _KEEPING_OPS or len(op.path) > _SHORT_PATH:
            return False
        value = op.value
        t = builtins.type(value)
        if t is dict or t is list or (t is int and value.bit_length() > _INT_PRETEST_BITS):
            return False  # a container's depth adds to the path's; a long int is checked in full
        for part in op.path:
            if "\x00" in part or not part.isascii():
                return False
    return True


def _long_results(value: Any, parsed: builtins.list[Op]) -> bool:
    """Whether an increment left an int too long for the inline test at its path (it may pass Python's limit)."""
    for op in parsed:
        if op.type == "increment" or op.type == "decrement":
            node = value
            for part in op.path:
                node = node.get(part) if builtins.type(node) is dict else None
            if builtins.type(node) is int and node.bit_length() > _INT_PRETEST_BITS:
                return True
    return False


def _names(keys: Iterable[str]) -> Sequence[str]:
    if isinstance(keys, str):
        raise StateValueError("keys must be a list of str, not a single str")
    return list(dict.fromkeys(check_name("key", k) for k in keys))
