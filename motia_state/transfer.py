"""Moving state between stores: export to a JSON file, import it (or the old File adapter's file), copy.

Usable from Python as well as from the ``motia-state`` CLI::

    async with StateManager.from_url("sqlite:///.motia/motia.state.db") as src, \\
               StateManager.from_url("postgresql://app@db/app") as dst:
        stats = await copy_state(src, dst)

The export format is one JSON document::

    {"format": "motia-state-export", "version": 1, "exported_at": "2025-01-01T00:00:00+00:00",
     "entries": [{"scope": "trace-1", "key": "booking", "value": {...}, "expires_at": null}, ...]}

Values are written with :func:`motia_state.values.encode`, so they read back exactly (``2**70`` stays an
exact int, ``1e16`` stays a float, ``{}`` stays a dict). ``expires_at`` is an ISO 8601 UTC time or null;
import and copy give each entry its *remaining* TTL and skip (and count) entries that have already expired.

Writes use ``set_many`` per scope and expiry, so the destination should have no default ``ttl``: with one,
entries that never expire would get it. The CLI opens the destination without a default ``ttl``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from .adapter import StateItem
from .errors import StateError, StateValueError
from .manager import StateManager
from .values import check_name, check_value, encode

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ImportFormatError",
    "TransferEntry",
    "TransferStats",
    "copy_state",
    "export_state",
    "import_entries",
    "import_file",
    "parse_import",
]

EXPORT_FORMAT: Final = "motia-state-export"
EXPORT_VERSION: Final = 1
FILE_ADAPTER: Final = "file-adapter"
DEFAULT_BATCH_SIZE: Final = 1000


class ImportFormatError(StateValueError):
    """An import file is not a motia-state export nor a File adapter state file, or holds a bad entry."""


@dataclass(frozen=True, slots=True)
class TransferEntry:
    """One entry on its way between stores; ``expires_at`` is an aware UTC datetime or None (never)."""

    scope: str
    key: str
    value: Any
    expires_at: datetime | None = None


@dataclass(slots=True)
class TransferStats:
    """What an export, import or copy did."""

    entries: int = 0  # written (import/copy) or exported
    scopes: int = 0  # scopes that had at least one entry
    expired: int = 0  # skipped because already expired
    format: str = EXPORT_FORMAT  # the format read (import only)

    def as_dict(self) -> dict[str, Any]:
        """The JSON summary the CLI prints."""
        return {"entries": self.entries, "scopes": self.scopes, "skipped_expired": self.expired}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_batch_size(batch_size: int) -> int:
    if type(batch_size) is not int or batch_size < 1:
        raise StateValueError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    return batch_size


async def _write_batch(dest: StateManager, scope: str, batch: Iterable[TransferEntry]) -> tuple[int, int]:
    """Write one batch of a scope with its remaining TTLs; return (written, skipped as expired)."""
    # Entries written together share one expiry, so grouping by it keeps the number of round trips low.
    groups: dict[datetime | None, dict[str, Any]] = {}
    for entry in batch:
        groups.setdefault(entry.expires_at, {})[entry.key] = entry.value
    written = expired = 0
    now = time.time()
    for expires_at, mapping in groups.items():
        ttl: float | None = None
        if expires_at is not None:
            ttl = expires_at.timestamp() - now
            if ttl < 0.001:  # below the store's millisecond precision: already gone
                expired += len(mapping)
                continue
        await dest.set_many(scope, mapping, ttl=ttl)
        written += len(mapping)
    return written, expired


# --- export --------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


async def _scopes(state: StateManager, scope: str | None) -> list[str]:
    return [scope] if scope is not None else await state.list_groups()


async def _pages(state: StateManager, scope: str, batch_size: int) -> AsyncIterator[list[StateItem]]:
    """The live entries of ``scope`` in key order, ``batch_size`` at a time (keyset paging: each page
    starts after the last key of the previous one, so only one page of values is ever in memory)."""
    after: str | None = None
    while True:
        page = await state.items(scope, limit=batch_size, after=after)
        if not page:
            return
        yield page
        if len(page) < batch_size:
            return
        after = page[-1].key


async def export_state(
    state: StateManager, out: IO[str], *, scope: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> TransferStats:
    """Write the store (or one scope) to ``out`` as a motia-state export, ``batch_size`` entries in memory
    at a time."""
    _check_batch_size(batch_size)
    stats = TransferStats()
    header = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": _iso(datetime.now(UTC))}
    # The envelope is written by hand so that entries stream out one per line.
    out.write(json.dumps(header, separators=(",", ":"))[:-1] + ',"entries":[')
    for name in await _scopes(state, scope):
        before = stats.entries
        async for page in _pages(state, name, batch_size):
            for item in page:
                out.write(",\n" if stats.entries else "\n")
                scope_text = json.dumps(item.scope, ensure_ascii=False)
                key_text = json.dumps(item.key, ensure_ascii=False)
                expiry_text = json.dumps(_iso(item.expires_at))
                out.write(
                    f'{{"scope":{scope_text},"key":{key_text},"value":{encode(item.value)},"expires_at":{expiry_text}}}'
                )
                stats.entries += 1
        stats.scopes += int(stats.entries > before)
    out.write("\n]}\n")
    return stats


# --- import --------------------------------------------------------------------------------------


def _strict_json(text: str, source: str) -> Any:
    def reject(name: str) -> Any:
        raise ImportFormatError(f"{source}: {name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{source}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ImportFormatError(f"{source}: nested too deeply to read") from None


def _entry(scope: object, key: object, value: Any, expires_at: datetime | None, where: str) -> TransferEntry:
    try:
        name = check_name("scope", scope)
        k = check_name("key", key)
        return TransferEntry(name, k, check_value(value, name, k), expires_at)
    except StateError as exc:
        raise ImportFormatError(f"{where}: {exc}") from None


def _parse_expiry(raw: object, where: str) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            # A time without an offset is taken as UTC, which is what export writes.
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    raise ImportFormatError(f"{where}: expires_at must be an ISO 8601 time or null, got {raw!r}")


def _parse_export(doc: Mapping[str, Any], source: str) -> list[TransferEntry]:
    version = doc.get("version")
    if version != EXPORT_VERSION:
        raise ImportFormatError(
            f"{source}: export format version {version!r} is not supported (this motia-state reads version"
            f" {EXPORT_VERSION}); upgrade motia-state"
        )
    raw_entries = doc.get("entries")
    if not isinstance(raw_entries, list):
        raise ImportFormatError(f"{source}: 'entries' must be a list")
    entries: list[TransferEntry] = []
    for index, raw in enumerate(raw_entries):
        where = f"{source}: entries[{index}]"
        if not isinstance(raw, dict) or "value" not in raw:
            raise ImportFormatError(f"{where}: expected an object with scope, key, value and expires_at")
        expires_at = _parse_expiry(raw.get("expires_at"), where)
        entries.append(_entry(raw.get("scope"), raw.get("key"), raw["value"], expires_at, where))
    return entries


def _parse_file_adapter(doc: Mapping[str, Any], source: str) -> list[TransferEntry]:
    entries: list[TransferEntry] = []
    for flat, encoded in doc.items():
        scope, _, key = flat.partition(":")
        where = f"{source}: entry {flat!r}"
        # The File adapter stored JSON.stringify(value) inside the JSON file: decode that string once more.
        entries.append(_entry(scope, key, _strict_json(encoded, where), None, where))
    return entries


def _is_file_adapter(doc: Mapping[str, Any]) -> bool:
    return all(":" in k and isinstance(v, str) for k, v in doc.items())


def parse_import(text: str, source: str = "import file") -> tuple[str, list[TransferEntry]]:
    """Detect the format of ``text`` and return ``(format, entries)``; the format is
    ``"motia-state-export"`` or ``"file-adapter"`` (``.motia/motia.state.json``). Every entry is checked
    before anything is written, so a bad file changes nothing."""
    doc = _strict_json(text, source)
    if isinstance(doc, dict) and doc.get("format") == EXPORT_FORMAT:
        return EXPORT_FORMAT, _parse_export(doc, source)
    if isinstance(doc, dict) and _is_file_adapter(doc):
        return FILE_ADAPTER, _parse_file_adapter(doc, source)
    raise ImportFormatError(
        f'{source}: neither a motia-state export (an object with "format": "{EXPORT_FORMAT}") nor a File'
        ' adapter state file (.motia/motia.state.json: an object of "scope:key" -> JSON string)'
    )


async def import_entries(
    dest: StateManager, entries: Iterable[TransferEntry], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> TransferStats:
    """Write ``entries`` with their remaining TTLs, in ``set_many`` batches per scope. Idempotent."""
    _check_batch_size(batch_size)
    by_scope: dict[str, list[TransferEntry]] = {}
    for entry in entries:
        by_scope.setdefault(entry.scope, []).append(entry)
    stats = TransferStats()
    for scope, scoped in by_scope.items():
        before = stats.entries
        for batch in _chunks(scoped, batch_size):
            written, expired = await _write_batch(dest, scope, batch)
            stats.entries += written
            stats.expired += expired
        stats.scopes += int(stats.entries > before)
    return stats


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path}: not UTF-8 text, so not a JSON state file") from None


async def import_file(
    dest: StateManager, path: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE, text: str | None = None
) -> TransferStats:
    """Import a motia-state export or a File adapter ``motia.state.json`` (format detected) into ``dest``."""
    if text is None:
        text = await asyncio.to_thread(_read_text, Path(path))
    fmt, entries = parse_import(text, str(path))
    stats = await import_entries(dest, entries, batch_size=batch_size)
    stats.format = fmt
    return stats


# --- copy ----------------------------------------------------------------------------------------


async def copy_state(
    source: StateManager,
    dest: StateManager,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_scope: Callable[[str, int], None] | None = None,
) -> TransferStats:
    """Copy every live entry of ``source`` into ``dest``, scope by scope, keeping values and remaining TTLs.

    Each scope is read in pages of ``batch_size`` entries and each page written before the next is read,
    so memory holds one batch of values whatever the store's size. Entries already in ``dest`` under the
    same scope and key are overwritten; others are left alone. ``on_scope(scope, copied)`` is called after
    each scope (e.g. to move a progress bar).
    """
    _check_batch_size(batch_size)
    stats = TransferStats()
    for scope in await source.list_groups():
        copied = 0
        async for page in _pages(source, scope, batch_size):
            written, expired = await _write_batch(
                dest, scope, (TransferEntry(i.scope, i.key, i.value, i.expires_at) for i in page)
            )
            copied += written
            stats.expired += expired
        stats.entries += copied
        stats.scopes += int(copied > 0)
        if on_scope is not None:
            on_scope(scope, copied)
    return stats
