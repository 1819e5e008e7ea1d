"""SQLite backend (the default): ``sqlite:///PATH``; see :mod:`.adapter`."""

from .adapter import SQLiteAdapter

__all__ = ["SQLiteAdapter"]
