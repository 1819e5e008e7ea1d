"""Redis backend: ``redis://…``, ``rediss://…``, in the ``tagged`` layout (:mod:`.adapter`) or Motia's own
(``layout: motia``, :mod:`.motia`)."""

from __future__ import annotations

from typing import Any

from ...adapter import StateAdapter
from ...urls import StoreURL
from .adapter import RedisAdapter

__all__ = ["RedisAdapter", "open_adapter"]


def open_adapter(url: str | StoreURL, *, layout: str = "tagged", **options: Any) -> StateAdapter:
    """The Redis adapter of ``layout``: ``tagged`` (default) or ``motia``."""
    if layout == "motia":
        from .motia import MotiaLayoutAdapter

        return MotiaLayoutAdapter(url, **options)
    return RedisAdapter(url, **options)
