"""Redis backend: ``redis://…``, ``rediss://…``; see :mod:`.adapter`."""

from .adapter import RedisAdapter

__all__ = ["RedisAdapter"]
