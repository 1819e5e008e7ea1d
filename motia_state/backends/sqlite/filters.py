"""``items`` filters compiled to SQLite SQL over ``motia_state AS s`` (``ops.match`` is the reference).

One compiler per filter op, keyed by the names of ``ops.FILTER_TABLE`` and checked against it at import.
Which JSON kinds a field may have to match comes from the table (``FilterOp.kinds``); this module only says
how SQLite spells a kind and each comparison. An op without a compiler here, or an operand SQLite cannot
compare exactly (a container, an integer beyond 64 bits), is pre-selected by kind and re-checked in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from ...ops import FILTER_TABLE, NUMBER, Filter, check_compiler, json_kind

__all__ = ["PYTHON_ONLY", "compile_filters"]

_INT64: Final = (-(2**63), 2**63 - 1)
# json_type() names of each JSON kind.
_SQLITE_TYPES: Final = {
    "null": ("null",),
    "boolean": ("true", "false"),
    "number": ("integer", "real"),
    "string": ("text",),
    "array": ("array",),
    "object": ("object",),
}


def _exact_number(v: object) -> bool:
    """Numbers SQLite can bind and compare exactly (ints beyond 64 bits cannot be bound)."""
    return type(v) is float or (type(v) is int and _INT64[0] <= v <= _INT64[1])


class _Sql:
    """Parameters of a fragment being built; ``recheck`` marks a filter SQL can only pre-select."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.recheck = False

    def p(self, value: Any) -> str:
        self.params.append(value)
        return "?"


class _Node:
    """A JSON node in SQL: its json_type ``t``, its SQL atom ``a`` and its JSON text ``v``."""

    __slots__ = ("a", "alias", "t", "v")

    def __init__(self, t: str, a: str, v: str, alias: str) -> None:
        self.t, self.a, self.v, self.alias = t, a, v, alias


def _kind_test(t: str, kinds: frozenset[str]) -> str:
    names = sorted(n for k in kinds for n in _SQLITE_TYPES[k])
    if not names:
        return "0"
    return f"{t} = '{names[0]}'" if len(names) == 1 else f"{t} IN ({', '.join(repr(n) for n in names)})"


def _equal(q: _Sql, node: _Node, operand: Any, *, negate: bool = False) -> str:
    """JSON equality of the node with ``operand`` (the kind test is the caller's); ``negate``: not equal."""
    kind = json_kind(operand)
    if kind == "null":
        return "0" if negate else "1"
    if kind == "boolean":
        want = (not operand) if negate else operand
        return f"{node.t} = '{'true' if want else 'false'}'"
    if kind in ("number", "string"):
        if kind == "number" and not _exact_number(operand):
            q.recheck = True
            return "1"
        return f"{node.a} {'<>' if negate else '='} {q.p(operand)}"
    q.recheck = True  # containers: the kind is tested in SQL, equality by the Python re-check
    return "1"


def _compare(sym: str) -> Callable[[_Sql, _Node, Any], str]:
    def compile_compare(q: _Sql, node: _Node, operand: Any) -> str:
        if json_kind(operand) == NUMBER and not _exact_number(operand):
            q.recheck = True
            return "1"
        return f"{node.a} {sym} {q.p(operand)}"

    return compile_compare


def _contains(negate: bool) -> Callable[[_Sql, _Node, Any], str]:
    def compile_contains(q: _Sql, node: _Node, operand: Any) -> str:
        parts: list[str] = []
        if type(operand) is str:
            # instr, never LIKE: '%' and '_' in the operand stay literal.
            parts.append(f"({node.t} = 'text' AND instr({node.a}, {q.p(operand)}) {'= 0' if negate else '> 0'})")
        inner = _Sql()
        elem = _Node(f"{node.alias}e.type", f"{node.alias}e.atom", f"{node.alias}e.value", node.alias + "e")
        test = f"{_kind_test(elem.t, FILTER_TABLE['eq'].kinds(operand))} AND {_equal(inner, elem, operand)}"
        # json_each only ever sees valid JSON text: a non-array node is replaced by '[]'.
        each = f"json_each(CASE WHEN {node.t} = 'array' THEN {node.v} ELSE '[]' END) AS {elem.alias}"
        if inner.recheck and negate:
            q.recheck = True  # NOT EXISTS over a pre-selection would drop rows: let Python decide
            parts.append(f"{node.t} = 'array'")
        else:
            q.recheck = q.recheck or inner.recheck
            q.params.extend(inner.params)
            parts.append(
                f"({node.t} = 'array' AND {'NOT ' if negate else ''}EXISTS (SELECT 1 FROM {each} WHERE {test}))"
            )
        return "(" + " OR ".join(parts) + ")"

    return compile_contains


def _starts(q: _Sql, node: _Node, operand: Any) -> str:
    # length()/substr() count code points in text, as Python does.
    return f"substr({node.a}, 1, {q.p(len(operand))}) = {q.p(operand)}"


def _ends(q: _Sql, node: _Node, operand: Any) -> str:
    n = len(operand)
    return f"length({node.a}) >= {q.p(n)} AND substr({node.a}, length({node.a}) - {q.p(n)} + 1) = {q.p(operand)}"


# The predicate of each op on a node that exists and whose kind already passed the table's rule.
_COMPILERS: Final[dict[str, Callable[[_Sql, _Node, Any], str]]] = {
    "eq": lambda q, node, operand: _equal(q, node, operand),
    "neq": lambda q, node, operand: _equal(q, node, operand, negate=True),
    "gt": _compare(">"),
    "gte": _compare(">="),
    "lt": _compare("<"),
    "lte": _compare("<="),
    "contains": _contains(False),
    "notContains": _contains(True),
    "startsWith": _starts,
    "endsWith": _ends,
    "isNull": lambda q, node, operand: "1",
    "isNotNull": lambda q, node, operand: "1",
}
#: Ops SQLite does not compile: pre-selected by kind, decided by ``ops.match``.
PYTHON_ONLY: Final = check_compiler("sqlite", _COMPILERS)


def _predicate(q: _Sql, f: Filter, node: _Node) -> str:
    kinds = FILTER_TABLE[f.op].kinds(f.value)
    test = _kind_test(node.t, kinds)
    if test == "0":
        return "0"
    compiler = _COMPILERS.get(f.op)
    if compiler is None:
        q.recheck = True
        return test
    body = compiler(q, node, f.value)
    return test if body == "1" else f"({test} AND {body})"


def _compile_one(f: Filter, i: int) -> tuple[str, _Sql]:
    q = _Sql()
    if not f.path:
        root = _Node("json_type(s.value)", "json_extract(s.value, '$')", "s.value", f"f{i}")
        return _predicate(q, f, root), q
    # Each path segment is matched by json_each's key against a bound parameter: every character of a
    # field name is literal ('.', '[', '"', '*', '\\', emoji...), whatever the SQLite version's path syntax.
    joins: list[str] = []
    conds: list[str] = []
    segments: list[Any] = []
    parent_type, parent_text = "json_type(s.value)", "s.value"
    for depth, seg in enumerate(f.path):
        alias = f"f{i}p{depth}"
        joins.append(f"json_each(CASE WHEN {parent_type} = 'object' THEN {parent_text} ELSE '{{}}' END) AS {alias}")
        conds.append(f"{alias}.key = ?")
        segments.append(seg)
        parent_type, parent_text = f"{alias}.type", f"{alias}.value"
    last = f"f{i}p{len(f.path) - 1}"
    node = _Node(f"{last}.type", f"{last}.atom", f"{last}.value", f"f{i}")
    if f.op == "isNull":
        # Missing or null: no existing non-null node at the path.
        pred, negate = f"{node.t} <> 'null'", True
    else:
        pred, negate = _predicate(q, f, node), False
    where = " AND ".join([*conds, pred])
    q.params[:0] = segments
    return f"{'NOT ' if negate else ''}EXISTS (SELECT 1 FROM {', '.join(joins)} WHERE {where})", q


def compile_filters(filters: Sequence[Filter]) -> tuple[str, list[Any], list[Filter]]:
    """SQL condition for ``filters`` (ANDed), its parameters, and the filters SQL only pre-selects
    (container operands, integers beyond 64 bits, ops without a compiler), which ``match`` re-checks.
    """
    conds: list[str] = []
    params: list[Any] = []
    recheck: list[Filter] = []
    for i, f in enumerate(filters):
        sql, q = _compile_one(f, i)
        conds.append(sql)
        params.extend(q.params)
        if q.recheck:
            recheck.append(f)
    return (" AND ".join(conds) if conds else "1"), params, recheck
