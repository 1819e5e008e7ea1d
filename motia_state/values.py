"""The value rules (SPEC §3): validation with the path of the fault, exact JSON encoding, typed rebuild."""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import json
import marshal
import math
import re
import sys
import types
import typing
from typing import Any, TypeVar, cast

from .errors import StateKeyError, StateValueError

__all__ = ["SharedText", "check_name", "check_ttl", "check_value", "decode", "encode", "rebuild"]

T = TypeVar("T")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_scan: cabc.Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode(text: str | bytes) -> Any:
    """The value of stored JSON text: json.loads, without its Python-level detour for the text we write (no
    surrounding whitespace, a str). Anything else (bytes, whitespace, an error to report) goes to json.loads."""
    if type(text) is str:
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            return json.loads(text)
        if end == len(text):
            return value
    return json.loads(text)


class SharedText:
    """The JSON text answering identical reads batched together, each caller to get its own objects from it.

    The first caller decodes the text; the others load a marshal copy of that fresh decode (made before the
    first caller gets it), about twice as fast as decoding the JSON again. Either way no two callers share
    a list or a dict.
    """

    __slots__ = ("_copy", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._copy: bytes | None = None

    def value(self) -> Any:
        """A new decode of the text: objects of this caller only."""
        if self._copy is not None:
            return marshal.loads(self._copy)
        value = decode(self.text)
        # Only JSON's types come out of decode, all of which marshal keeps exactly (floats bit for bit).
        self._copy = marshal.dumps(value)
        return value


def _fast_dumps() -> cabc.Callable[[Any], str] | None:
    """The C encoder behind ``_dumps``, built once: JSONEncoder.encode builds it again at every call (about
    half of its time for a small value). No circular check: values are checked first (their depth is bounded).
    None where the C accelerator is missing."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    chunks = make(None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    join = "".join
    return lambda value: join(chunks(value, 0))


_dumps_fast = _fast_dumps() or _dumps


def _has_surrogate(text: str) -> bool:
    # Lone surrogates cannot be encoded as UTF-8, so no database could store them.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_name(what: str, name: object) -> str:
    """Return ``name`` if it is a legal scope or key, else raise :class:`StateKeyError`."""
    if type(name) is not str:
        raise StateKeyError(f"{what} must be a non-empty str, got {type(name).__name__}")
    if not name:
        raise StateKeyError(f"{what} must be a non-empty str, got ''")
    if "\x00" in name:
        raise StateKeyError(f"{what} {name!r} contains the character U+0000, which no backend can store")
    if not name.isascii() and _has_surrogate(name):
        raise StateKeyError(f"{what} {name!r} contains a lone surrogate, which is not valid Unicode text")
    return name


def check_ttl(ttl: object, scope: str | None = None, key: str | None = None) -> float:
    """Return ``ttl`` as float seconds, or raise :class:`StateValueError`."""
    if type(ttl) is bool or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        where = f" for scope {scope!r} key {key!r}" if scope is not None else ""
        raise StateValueError(f"ttl{where} must be a finite number of seconds > 0, got {ttl!r}", scope=scope, key=key)
    return float(ttl)


class _Invalid(Exception):
    """A fault inside a value; ``parts`` collects the path from the fault outwards while unwinding."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.parts: list[object] = []

    @property
    def path(self) -> str:
        return "value" + "".join(f"[{p!r}]" for p in reversed(self.parts))


def _join(path: str, part: object) -> str:
    return f"{path}[{part!r}]"


# Deeper values are refused: encoding, copying and decoding recurse about twice per level, so a value
# Python's recursion limit let through here could still fail later with a raw RecursionError.
MAX_DEPTH = 256


# Ints longer than this get the exact test below; Python's lowest allowed digit limit (640) is ~2,126 bits.
_INT_PRETEST_BITS = 2_000


def _max_int_bits() -> int:
    # Python refuses int <-> decimal text beyond sys.get_int_max_str_digits() digits (0 = no limit); stay
    # a little under it so that encode and decode can never fail on a checked value.
    digits = sys.get_int_max_str_digits()
    return sys.maxsize if digits == 0 else int((digits - 1) * 3.3219)


def _check_int(value: int) -> None:
    if value.bit_length() > _max_int_bits():
        raise _Invalid(
            f"the integer has more digits than Python converts to text (sys.get_int_max_str_digits() = "
            f"{sys.get_int_max_str_digits()}); store it as a string, or raise that limit"
        )


def _check_str(text: str, what: str = "the string") -> None:
    if "\x00" in text:
        raise _Invalid(f"{what} contains U+0000, which no backend can store")
    if not text.isascii() and _has_surrogate(text):
        raise _Invalid(f"{what} contains a lone surrogate, which is not valid Unicode")


def _walk(value: Any, depth: int = 0) -> Any:
    """Return ``value`` in stored form (the same object when it is already plain JSON).

    Hot path of every write: scalars inside containers are checked inline, and the path of a fault is
    only built while the exception unwinds.
    """
    t = type(value)
    if t is str:
        _check_str(value)
        return value
    if t is int:
        if value.bit_length() > _INT_PRETEST_BITS:
            _check_int(value)
        return value
    if t is bool or value is None:
        return value
    if t is float:
        if not math.isfinite(value):
            raise _Invalid(f"{value!r} is not a finite number (JSON has no NaN or Infinity)")
        return value
    if (t is dict or t is list or t is tuple) and depth >= MAX_DEPTH:
        raise _Invalid(f"the value is nested more than {MAX_DEPTH} levels deep")
    if t is dict:
        out: dict[str, Any] | None = None
        for k, v in value.items():
            if type(k) is not str:
                raise _Invalid(f"dict key {k!r} is a {type(k).__name__}; only str keys are stored")
            if "\x00" in k or not k.isascii():  # the message is built only for a suspect key
                _check_str(k, f"dict key {k!r}")
            tv = type(v)
            if tv is str:
                if "\x00" in v or not v.isascii():
                    try:
                        _check_str(v)
                    except _Invalid as exc:
                        exc.parts.append(k)
                        raise
                continue
            if (
                (tv is int and v.bit_length() <= _INT_PRETEST_BITS)
                or tv is bool
                or v is None
                or (tv is float and math.isfinite(v))
            ):
                continue
            try:
                nv = _walk(v, depth + 1)
            except _Invalid as exc:
                exc.parts.append(k)
                raise
            if nv is not v:
                # Copied at the first change: the keys after it are copied as they are, which they stay.
                if out is None:
                    out = dict(value)
                out[k] = nv
        return value if out is None else out
    if t is list or t is tuple:
        # A tuple is stored as a list; a list is copied only when an item changes form.
        items: list[Any] | None = None if t is list else list(value)
        for i, v in enumerate(value):
            tv = type(v)
            if tv is str:
                if "\x00" in v or not v.isascii():
                    try:
                        _check_str(v)
                    except _Invalid as exc:
                        exc.parts.append(i)
                        raise
                continue
            if (
                (tv is int and v.bit_length() <= _INT_PRETEST_BITS)
                or tv is bool
                or v is None
                or (tv is float and math.isfinite(v))
            ):
                continue
            try:
                nv = _walk(v, depth + 1)
            except _Invalid as exc:
                exc.parts.append(i)
                raise
            if nv is not v:
                if items is None:
                    items = list(value)
                items[i] = nv
        return value if items is None else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _walk({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(type(value), "model_fields"):
        return _walk(dump(mode="json"), depth)
    if isinstance(value, str | int | float | dict | list | tuple):
        raise _Invalid(f"{t.__name__} is a subclass of a JSON type; store the plain value instead")
    raise _Invalid(f"{t.__name__} is not a JSON value (use dict, list, str, int, float, bool or None)")


def check_value(value: Any, scope: str, key: str) -> Any:
    """Validate ``value`` for ``scope``/``key`` and return it in stored form, or raise StateValueError."""
    try:
        return _walk(value)
    except _Invalid as exc:
        raise StateValueError(
            f"cannot store scope {scope!r} key {key!r}: at {exc.path}: {exc.reason}",
            scope=scope,
            key=key,
            path=exc.path,
        ) from None
    except RecursionError:
        raise StateValueError(
            f"cannot store scope {scope!r} key {key!r}: the value is nested too deeply", scope=scope, key=key
        ) from None


def _float_text(f: float) -> str:
    text = repr(f)
    if "e" not in text:
        return text
    # jsonb turns 1e+16 into the integer 10000000000000000; positional digits with a fraction keep it a float.
    from decimal import Decimal  # rare: imported here, not at every start (a CLI call pays for each import)

    text = format(Decimal(text), "f")
    return text if "." in text else text + ".0"


# A float the C encoder wrote with an exponent ("1e+16", "1.5e-07"); a string holding such text only costs
# a detour through the exact slow path.
_EXPONENT = re.compile(r"[0-9]e[+-][0-9]")


def _encode_slow(value: Any) -> str:
    t = type(value)
    if t is float:
        return _float_text(value)
    if t is dict:
        return "{" + ",".join(_dumps(k) + ":" + _encode_slow(v) for k, v in value.items()) + "}"
    if t is list:
        return "[" + ",".join(_encode_slow(v) for v in value) + "]"
    return _dumps(value)


def encode(value: Any) -> str:
    """JSON text of an already checked value; floats always read back as floats, even through jsonb."""
    text = _dumps_fast(value)
    # Every exponent float's repr holds "e+" or "e-": two substring scans spare most texts the regex.
    if ("e+" not in text and "e-" not in text) or _EXPONENT.search(text) is None:
        return text
    return _encode_slow(value)


# --- typed rebuild -------------------------------------------------------------------------------


def rebuild(value: Any, tp: type[T] | Any) -> T:
    """Rebuild a decoded JSON value as ``tp`` (dataclass, pydantic model, TypedDict, containers...)."""
    try:
        return cast(T, _rebuild(value, tp, "value"))
    except StateValueError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise StateValueError(f"cannot rebuild the stored value as {_type_name(tp)}: {exc}") from exc


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


def _rebuild(value: Any, tp: Any, path: str) -> Any:
    if tp is None or tp is Any or tp is object:
        return value
    validate = getattr(tp, "model_validate", None)
    if callable(validate):
        return validate(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise StateValueError(f"cannot rebuild {path} as {tp.__qualname__}: stored {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        kwargs = {
            f.name: _rebuild(value[f.name], hints.get(f.name, Any), _join(path, f.name))
            for f in dataclasses.fields(tp)
            if f.init and f.name in value
        }
        return tp(**kwargs)
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        if not isinstance(value, dict):
            raise StateValueError(f"cannot rebuild {path} as {_type_name(tp)}: stored {type(value).__name__}")
        return {k: _rebuild(v, hints.get(k, Any), _join(path, k)) for k, v in value.items()}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _rebuild(value, args[0], path)
    if origin is typing.Literal:
        if value not in args:
            raise StateValueError(f"cannot rebuild {path}: {value!r} is not one of {args!r}")
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _rebuild(value, arg, path)
            except (StateValueError, TypeError, ValueError, KeyError) as exc:
                errors.append(str(exc))
        raise StateValueError(f"cannot rebuild {path} as {tp!r}: " + "; ".join(errors))
    if origin in (list, tuple, set, frozenset, cabc.Sequence, cabc.MutableSequence, cabc.Set):
        if not isinstance(value, list):
            raise StateValueError(f"cannot rebuild {path} as {tp!r}: stored {type(value).__name__}")
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_rebuild(v, args[0], _join(path, i)) for i, v in enumerate(value))
            if args:
                return tuple(_rebuild(v, a, _join(path, i)) for i, (v, a) in enumerate(zip(value, args, strict=False)))
            return tuple(value)
        item = args[0] if args else Any
        items = [_rebuild(v, item, _join(path, i)) for i, v in enumerate(value)]
        if origin in (set, frozenset):
            return origin(items)
        return items
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        if not isinstance(value, dict):
            raise StateValueError(f"cannot rebuild {path} as {tp!r}: stored {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _rebuild(v, vt, _join(path, k)) for k, v in value.items()}
    if origin is not None:
        return value
    if tp is float and type(value) is int:
        return float(value)
    if isinstance(tp, type):
        if isinstance(value, tp) and not (tp is int and type(value) is bool):
            return value
        if issubclass(tp, tuple) and isinstance(value, list):
            return tp(*value) if hasattr(tp, "_fields") else tp(value)
        try:
            return tp(value)
        except Exception as exc:
            raise StateValueError(f"cannot rebuild {path} as {tp.__qualname__}: {exc}") from exc
    return value
