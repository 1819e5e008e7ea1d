"""Postgres backend: ``postgresql://…``; see :mod:`.adapter`."""

from .adapter import PostgresAdapter

__all__ = ["PostgresAdapter"]
