"""Update operations (SPEC §5) and ``items`` filters (SPEC §6) as pure functions.

The helpers build the same dict shapes Motia uses::

    await state.update("trace-1", "booking", [ops.increment("seats", 2), ops.set_(["venue", "id"], "v1")])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import StateValueError, UpdateOpError
from .values import check_value

__all__ = [
    "FILTER_OPS",
    "FILTER_TABLE",
    "Filter",
    "FilterOp",
    "Op",
    "append",
    "apply_ops",
    "check_compiler",
    "decrement",
    "increment",
    "json_kind",
    "match",
    "merge",
    "parse_filters",
    "parse_ops",
    "remove",
    "resolve",
    "set_",
]

Path = str | Sequence[str]


# --- helpers building op dicts -------------------------------------------------------------------


def set_(path: Path, value: Any) -> dict[str, Any]:
    """Set the field at ``path`` (``""`` replaces the whole value)."""
    return {"type": "set", "path": path, "value": value}


def increment(path: Path, by: int | float = 1) -> dict[str, Any]:
    """Add ``by`` to the number at ``path`` (a missing field counts as 0)."""
    return {"type": "increment", "path": path, "by": by}


def decrement(path: Path, by: int | float = 1) -> dict[str, Any]:
    """Subtract ``by`` from the number at ``path`` (a missing field counts as 0)."""
    return {"type": "decrement", "path": path, "by": by}


def append(path: Path, value: Any) -> dict[str, Any]:
    """Push ``value`` onto the list at ``path`` (missing = ``[]``), or concatenate onto a string."""
    return {"type": "append", "path": path, "value": value}


def remove(path: Path) -> dict[str, Any]:
    """Delete the field at ``path`` (absent = no-op)."""
    return {"type": "remove", "path": path}


def merge(value: Mapping[str, Any], path: Path | None = None) -> dict[str, Any]:
    """Shallow-merge ``value`` into the object at ``path`` (the root when omitted)."""
    op: dict[str, Any] = {"type": "merge", "value": value}
    if path is not None:
        op["path"] = path
    return op


# --- parsing -------------------------------------------------------------------------------------

_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class Op:
    """One validated update operation; ``path`` is a tuple of literal segments, ``()`` = the root."""

    type: str
    path: tuple[str, ...]
    value: Any = None


_OP_FIELDS: Final = {
    "set": ({"type", "path", "value"}, {"type", "path", "value"}),
    "increment": ({"type", "path"}, {"type", "path", "by"}),
    "decrement": ({"type", "path"}, {"type", "path", "by"}),
    "append": ({"type", "path", "value"}, {"type", "path", "value"}),
    "remove": ({"type", "path"}, {"type", "path"}),
    "merge": ({"type", "value"}, {"type", "path", "value"}),
}


def _parse_path(raw: object, what: str) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    if type(raw) is str:
        return (raw,)
    if isinstance(raw, list | tuple) and all(type(p) is str and p for p in raw):
        return tuple(raw)
    raise ValueError(f"{what} path must be a field name or a list of non-empty field names, got {raw!r}")


def parse_ops(raw_ops: object, scope: str, key: str) -> list[Op]:
    """Validate ``update`` operations; raise UpdateOpError (bad op) or StateValueError (bad value)."""
    # A list of dicts (the usual call) skips the ABC checks, which cost more than the rest of a small update.
    given_ops: Iterable[Any]
    if type(raw_ops) is list or type(raw_ops) is tuple:
        given_ops = raw_ops
    elif isinstance(raw_ops, Mapping) or not isinstance(raw_ops, Iterable) or isinstance(raw_ops, str | bytes):
        raise UpdateOpError(f"update ops must be a list of op dicts, got {type(raw_ops).__name__}", op_index=0)
    else:
        given_ops = raw_ops
    parsed: list[Op] = []
    for i, raw in enumerate(given_ops):
        plain = type(raw) is dict
        if not plain and not isinstance(raw, Mapping):
            raise UpdateOpError(f"op {i} must be a dict, got {type(raw).__name__}", op_index=i)
        kind = raw.get("type")
        spec = _OP_FIELDS.get(kind)
        if spec is None:
            raise UpdateOpError(f"op {i} has unknown type {kind!r}; use one of {', '.join(_OP_FIELDS)}", op_index=i)
        required, allowed = spec
        fields = raw.keys() if plain else set(raw)
        if not required <= fields or not fields <= allowed:
            raise UpdateOpError(
                f"op {i} ({kind}) must have the fields {sorted(required)}"
                f" (optional: {sorted(allowed - required)}), got {sorted(map(str, fields))}",
                op_index=i,
            )
        given = raw.get("path")
        if type(given) is str and given:
            path: tuple[str, ...] = (given,)  # the usual one-field path, without building the error prefix
        else:
            try:
                path = _parse_path(given, f"op {i} ({kind})")
            except ValueError as exc:
                raise UpdateOpError(str(exc), op_index=i) from None
        value: Any = None
        if kind == "increment" or kind == "decrement":
            value = raw.get("by", 1)
            by = type(value)
            # isfinite() of an int beyond a float's range raises OverflowError: ints are always finite.
            if (by is not int and by is not float) or (by is float and not math.isfinite(value)):
                raise UpdateOpError(f"op {i} ({kind}): 'by' must be a finite int or float, got {value!r}", op_index=i)
        elif kind == "remove":
            if not path:
                raise UpdateOpError(f"op {i} (remove) needs a field path; use delete() for the whole entry", op_index=i)
        elif kind in ("set", "append", "merge"):
            try:
                value = check_value(raw["value"], scope, key)
            except StateValueError as exc:
                raise StateValueError(f"op {i} ({kind}): {exc}", scope=scope, key=key, path=exc.path) from None
            if kind == "merge" and type(value) is not dict:
                raise UpdateOpError(f"op {i} (merge): value must be a dict, got {type(value).__name__}", op_index=i)
        parsed.append(Op(kind, path, value))
    return parsed


# --- applying ------------------------------------------------------------------------------------


def _clone(value: Any) -> Any:
    """Copy of a checked JSON value (only dicts and lists are mutable); far cheaper than copy.deepcopy."""
    t = type(value)
    if t is dict:
        # A shallow copy in C, then only the nested containers replaced: no call per scalar.
        out = value.copy()
        for k, v in out.items():
            tv = type(v)
            if tv is dict or tv is list:
                out[k] = _clone(v)
        return out
    if t is list:
        items = value.copy()
        for i, v in enumerate(items):
            tv = type(v)
            if tv is dict or tv is list:
                items[i] = _clone(v)
        return items
    return value


def _parent(root: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The dict holding the last segment of ``path``, creating ``{}`` for missing or non-object steps."""
    node = root
    for seg in path[:-1]:
        child = node.get(seg)
        if type(child) is not dict:
            child = {}
            node[seg] = child
        node = child
    return node


def _apply_one(current: Any, op: Op, i: int) -> Any:
    if op.type == "set" and not op.path:
        return _clone(op.value)
    if op.type == "merge" and not op.path:
        base = {} if current is None else current
        if type(base) is not dict:
            raise UpdateOpError(f"op {i} (merge): the value is a {type(base).__name__}, not an object", op_index=i)
        return {**base, **_clone(op.value)}
    if not op.path:
        if op.type in ("increment", "decrement"):
            return _add(current, op, i)
        if op.type == "append":
            return _append(current, op, i)
    root = current if type(current) is dict else {}
    if op.type == "remove":
        node: Any = root
        for seg in op.path[:-1]:
            node = node.get(seg) if type(node) is dict else None
        if type(node) is dict:
            node.pop(op.path[-1], None)
        return root
    parent = root if len(op.path) == 1 else _parent(root, op.path)
    last = op.path[-1]
    old = parent.get(last, _MISSING)
    if op.type == "set":
        parent[last] = _clone(op.value)
    elif op.type in ("increment", "decrement"):
        parent[last] = _add(None if old is _MISSING else old, op, i, missing=old is _MISSING)
    elif op.type == "append":
        parent[last] = _append(None if old is _MISSING else old, op, i, missing=old is _MISSING)
    else:  # merge
        if old is _MISSING:
            old = {}
        if type(old) is not dict:
            raise UpdateOpError(
                f"op {i} (merge): the field at {list(op.path)} is a {type(old).__name__}, not an object", op_index=i
            )
        parent[last] = {**old, **_clone(op.value)}
    return root


def _add(old: Any, op: Op, i: int, *, missing: bool = False) -> Any:
    if missing:
        old = 0
    if type(old) is not int and type(old) is not float:
        raise UpdateOpError(
            f"op {i} ({op.type}): the field at {list(op.path)} is {type(old).__name__}, not a number", op_index=i
        )
    try:
        result = old + op.value if op.type == "increment" else old - op.value
    except OverflowError:  # a float and an int beyond a float's range
        result = math.inf
    if type(result) is float and not math.isfinite(result):
        raise UpdateOpError(f"op {i} ({op.type}): the result overflows a float", op_index=i)
    return result


def _append(old: Any, op: Op, i: int, *, missing: bool = False) -> Any:
    if missing:
        return [_clone(op.value)]
    if type(old) is list:
        return [*old, _clone(op.value)]
    if type(old) is str and type(op.value) is str:
        return old + op.value
    raise UpdateOpError(
        f"op {i} (append): cannot append {type(op.value).__name__} onto {type(old).__name__}"
        f" at {list(op.path)}; append works on lists and onto strings",
        op_index=i,
    )


def apply_ops(current: Any, ops: Sequence[Op]) -> Any:
    """Return the value after ``ops``; ``current`` (None = absent entry, starts as ``{}``) is not mutated."""
    value: Any = {} if current is None else _clone(current)
    for i, op in enumerate(ops):
        value = _apply_one(value, op, i)
    return value


# --- filters -------------------------------------------------------------------------------------

# JSON kinds, named as Postgres's jsonb_typeof names them.
NULL, BOOLEAN, NUMBER, STRING, ARRAY, OBJECT = "null", "boolean", "number", "string", "array", "object"
ALL_KINDS: Final = frozenset({NULL, BOOLEAN, NUMBER, STRING, ARRAY, OBJECT})
_NONE: Final[frozenset[str]] = frozenset()


def json_kind(value: Any) -> str:
    """The JSON kind of a checked value: null, boolean, number, string, array or object."""
    if value is None:
        return NULL
    t = type(value)
    if t is bool:
        return BOOLEAN
    if t is int or t is float:
        return NUMBER
    if t is str:
        return STRING
    return ARRAY if t is list else OBJECT


def _same_kind_only(operand: Any) -> frozenset[str]:
    return frozenset({json_kind(operand)})


def _ordered(operand: Any) -> frozenset[str]:
    kind = json_kind(operand)
    return frozenset({kind}) if kind in (NUMBER, STRING) else _NONE


def _containers(operand: Any) -> frozenset[str]:
    return frozenset({STRING, ARRAY}) if type(operand) is str else frozenset({ARRAY})


def _strings(operand: Any) -> frozenset[str]:
    return frozenset({STRING}) if type(operand) is str else _NONE


@dataclass(frozen=True, slots=True)
class FilterOp:
    """One filter operation and the one statement of its type rule.

    ``kinds(operand)`` is the set of JSON kinds a field can have and still match: ``gt`` with a number
    matches only numbers, ``startsWith`` with a non-string matches nothing. ``match`` and every SQL compiler
    read this rule, so no backend can disagree on which types ever match.
    """

    name: str
    needs_value: bool
    kinds: Callable[[Any], frozenset[str]]


#: Every filter operation (Motia's names). A SQL compiler keyed by these names is checked against it at import.
FILTER_TABLE: Final[Mapping[str, FilterOp]] = {
    op.name: op
    for op in (
        FilterOp("eq", True, _same_kind_only),
        FilterOp("neq", True, _same_kind_only),
        FilterOp("gt", True, _ordered),
        FilterOp("gte", True, _ordered),
        FilterOp("lt", True, _ordered),
        FilterOp("lte", True, _ordered),
        FilterOp("contains", True, _containers),
        FilterOp("notContains", True, _containers),
        FilterOp("startsWith", True, _strings),
        FilterOp("endsWith", True, _strings),
        FilterOp("isNull", False, lambda _: frozenset({NULL})),
        FilterOp("isNotNull", False, lambda _: ALL_KINDS - {NULL}),
    )
}
FILTER_OPS: Final = tuple(FILTER_TABLE)


def check_compiler(dialect: str, compilers: Mapping[str, object]) -> frozenset[str]:
    """Check a SQL dialect's filter compilers against the table; return the ops it leaves to Python.

    A compiler for an op the table does not have is a bug (raised at import). An op the dialect does not
    compile is checked in Python on the rows SQL returns, never turned into another op's predicate.
    """
    unknown = set(compilers) - set(FILTER_TABLE)
    if unknown:
        raise RuntimeError(f"{dialect} filter compilers for unknown ops {sorted(unknown)}; known: {FILTER_OPS}")
    return frozenset(FILTER_TABLE) - set(compilers)


@dataclass(frozen=True, slots=True)
class Filter:
    """One validated filter; ``path`` is a tuple of literal segments, ``()`` = the whole value."""

    path: tuple[str, ...]
    op: str
    value: Any = None


def parse_filters(raw_filters: object) -> tuple[Filter, ...]:
    """Validate ``items`` filters; raise StateValueError naming the bad one."""
    if raw_filters is None:
        return ()
    if isinstance(raw_filters, Mapping):
        raw_filters = [raw_filters]
    if not isinstance(raw_filters, Iterable) or isinstance(raw_filters, str | bytes):
        raise StateValueError(f"filters must be a list of filter dicts, got {type(raw_filters).__name__}")
    out: list[Filter] = []
    for i, raw in enumerate(raw_filters):
        if isinstance(raw, Filter):
            out.append(raw)
            continue
        if not isinstance(raw, Mapping):
            raise StateValueError(f"filter {i} must be a dict with path, op and value, got {type(raw).__name__}")
        op = raw.get("op")
        if type(op) is not str or op not in FILTER_TABLE:
            raise StateValueError(f"filter {i} has unknown op {op!r}; use one of {', '.join(FILTER_OPS)}")
        extra = set(raw) - {"path", "op", "value"}
        if extra:
            raise StateValueError(f"filter {i} has unknown fields {sorted(map(str, extra))}")
        try:
            path = _parse_path(raw.get("path"), f"filter {i}")
        except ValueError as exc:
            raise StateValueError(str(exc)) from None
        value = None
        if FILTER_TABLE[op].needs_value:
            if "value" not in raw:
                raise StateValueError(f"filter {i} ({op}) needs a value")
            value = check_value(raw["value"], "<filter>", str(i))
        out.append(Filter(path, op, value))
    return tuple(out)


def resolve(value: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path``, or the module's missing marker when the path does not exist."""
    node = value
    for seg in path:
        if type(node) is not dict:
            return _MISSING
        node = node.get(seg, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, bool never a number, containers element-wise."""
    if json_kind(a) != json_kind(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _match_one(value: Any, f: Filter) -> bool:
    field = resolve(value, f.path)
    op = f.op
    if field is _MISSING:
        return op == "isNull"  # a missing field is null to isNull and matches nothing else
    if json_kind(field) not in FILTER_TABLE[op].kinds(f.value):
        return False
    operand = f.value
    if op in ("isNull", "isNotNull"):
        return True
    if op == "eq":
        return _json_equal(field, operand)
    if op == "neq":
        return not _json_equal(field, operand)
    if op == "gt":
        return bool(field > operand)
    if op == "gte":
        return bool(field >= operand)
    if op == "lt":
        return bool(field < operand)
    if op == "lte":
        return bool(field <= operand)
    if op in ("contains", "notContains"):
        found = operand in field if type(field) is str else any(_json_equal(x, operand) for x in field)
        return found if op == "contains" else not found
    if op == "startsWith":
        return bool(field.startswith(operand))
    if op == "endsWith":
        return bool(field.endswith(operand))
    raise AssertionError(f"filter op {op!r} is in FILTER_TABLE but not in match()")


def match(value: Any, filters: Sequence[Filter]) -> bool:
    """True when ``value`` passes every filter (AND)."""
    return all(_match_one(value, f) for f in filters)
