"""Read helpers for browsing a store (a page of scopes, a page of a key's history, both keyset-paged): the state
browser (``motia-state ui``) uses them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .changes import Change
from .errors import StateValueError
from .values import check_name

if TYPE_CHECKING:
    from .manager import StateManager

__all__ = ["key_history", "scope_page"]

# A larger limit means "all of them" anyway; clamped so that no driver meets an integer it cannot send.
_MAX_LIMIT: Final = 2**31 - 1
# Revisions are SQL bigints: a ``before`` above every possible one is no bound at all.
_MAX_REVISION: Final = 2**63 - 1


def _check_limit(limit: object) -> int:
    if type(limit) is not int or limit < 1:
        raise StateValueError(f"limit must be an int >= 1, got {limit!r}")
    return min(limit, _MAX_LIMIT)


def _searchable(search: str) -> bool:
    """Whether any scope could contain ``search``: none holds U+0000 or a lone surrogate (SPEC §4)."""
    if "\x00" in search:
        return False
    try:
        search.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def scope_page(
    state: StateManager, *, after: str | None = None, limit: int = 50, search: str | None = None
) -> list[str]:
    """At most ``limit`` scopes holding a live entry, sorted by code point as ``list_groups()`` is, each sorting
    strictly after ``after`` (any str, not necessarily a scope; None: from the first) and, with ``search``,
    containing it as a plain case-sensitive substring (``%``, ``_``, ``*`` are literal; ``''`` = no search).

    The next page: ``after=`` the last scope of this one.
    """
    if after is not None:
        check_name("after", after)
    wanted = _check_limit(limit)
    if search is not None and type(search) is not str:
        raise StateValueError(f"search must be a str or None, got {type(search).__name__}")
    if search is not None and not _searchable(search):
        return []
    adapter = await state._connected_adapter()
    try:
        found = await adapter.scopes_page(after, wanted, search or None)
    except Exception as exc:
        state._raise(exc)
    # Sorted and never a scope twice, whatever a custom adapter's override reports (as list_groups()).
    return sorted(set(found))[:wanted]


async def key_history(
    state: StateManager, scope: str, key: str, *, before: int | None = None, limit: int = 50
) -> list[Change]:
    """The retained changes (SPEC §10) of ``key`` in ``scope``, newest first, at most ``limit``; with ``before``
    (a revision), only those below it.

    The next (older) page: ``before=`` the last revision of this one. Raises :class:`StateConfigError` on a store
    that records no changes, as ``watch()`` does.
    """
    check_name("scope", scope)
    check_name("key", key)
    wanted = _check_limit(limit)
    if before is not None and (type(before) is not int or before < 0):
        raise StateValueError(f"before must be a revision (an int >= 0) or None, got {before!r}")
    if before is not None and before > _MAX_REVISION:
        before = None
    state._check_changes()
    adapter = await state._connected_adapter()
    try:
        found = await adapter.key_history(scope, key, before, wanted)
    except Exception as exc:
        state._raise(exc)
    return found
