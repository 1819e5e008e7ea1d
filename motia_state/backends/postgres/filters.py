"""``items`` filters compiled to Postgres SQL on the ``value`` jsonb column (``ops.match`` is the reference).

One compiler per filter op, keyed by the names of ``ops.FILTER_TABLE`` and checked against it at import.
Which JSON kinds a field may have to match comes from the table (``FilterOp.kinds``: ``jsonb_typeof`` uses
the same names); this module only says how Postgres spells each comparison. An op without a compiler
here is pre-selected by kind in SQL and decided by ``match`` on the rows returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from ...ops import FILTER_TABLE, Filter, check_compiler, json_kind
from ...values import encode

__all__ = ["PYTHON_ONLY", "FilterSQL"]


class FilterSQL:
    """Compiles filters to WHERE fragments numbering their parameters from ``first_param``."""

    def __init__(self, first_param: int) -> None:
        self.params: list[Any] = []
        self.recheck: list[Filter] = []
        self._next = first_param

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        ref = f"${self._next}::{cast}"
        self._next += 1
        return ref

    def field(self, path: tuple[str, ...]) -> str:
        # `->` with a text key is NULL on arrays and scalars, exactly like ops.resolve's "missing".
        expr = "value"
        for seg in path:
            expr = f"({expr} -> {self.param(seg, 'text')})"
        return expr

    def compile(self, f: Filter) -> str:
        """The condition for ``f``; an op without a compiler also lands in ``recheck``."""
        kinds = FILTER_TABLE[f.op].kinds(f.value)
        if not kinds:
            return "FALSE"  # the table's rule: an operand of this type never matches
        field = self.field(f.path)
        if f.op == "isNull":
            return f"({field} IS NULL OR {field} = 'null'::jsonb)"
        names = ", ".join(f"'{k}'" for k in sorted(kinds))
        test = f"jsonb_typeof({field}) IN ({names})"
        compiler = _COMPILERS.get(f.op)
        if compiler is None:
            self.recheck.append(f)
            return f"({test})"
        body = compiler(self, field, f.value)
        return f"({test})" if body is None else f"({test} AND {body})"


def _text(field: str) -> str:
    return f"({field} #>> '{{}}')"


def _eq(q: FilterSQL, field: str, operand: Any) -> str:
    # jsonb equality: numbers by value (1 = 1.0), true <> 1, containers element by element.
    return f"{field} = {q.param(encode(operand), 'jsonb')}"


def _neq(q: FilterSQL, field: str, operand: Any) -> str:
    return f"{field} <> {q.param(encode(operand), 'jsonb')}"


def _compare(sym: str) -> Callable[[FilterSQL, str, Any], str]:
    def compile_compare(q: FilterSQL, field: str, operand: Any) -> str:
        if json_kind(operand) == "number":
            return f"{field} {sym} {q.param(encode(operand), 'jsonb')}"  # jsonb orders numbers numerically
        # jsonb would compare strings with the database collation; code point order is COLLATE "C".
        return f'{_text(field)} COLLATE "C" {sym} {q.param(operand, "text")} COLLATE "C"'

    return compile_compare


def _contains(negate: bool) -> Callable[[FilterSQL, str, Any], str]:
    def compile_contains(q: FilterSQL, field: str, operand: Any) -> str:
        neg = "NOT " if negate else ""
        member = (
            f"{neg}EXISTS (SELECT 1 FROM jsonb_array_elements({field}) AS e(v)"
            f" WHERE e.v = {q.param(encode(operand), 'jsonb')})"
        )
        if type(operand) is not str:
            return member
        sub = f"{neg}(strpos({_text(field)}, {q.param(operand, 'text')}) > 0)"
        return f"(CASE jsonb_typeof({field}) WHEN 'string' THEN {sub} ELSE {member} END)"

    return compile_contains


def _affix(side: str) -> Callable[[FilterSQL, str, Any], str]:
    def compile_affix(q: FilterSQL, field: str, operand: Any) -> str:
        s = q.param(operand, "text")
        return f'{side}({_text(field)}, char_length({s})) COLLATE "C" = {s} COLLATE "C"'

    return compile_affix


# The predicate of each op on a field whose kind already passed the table's rule (None: the kind test is all).
_COMPILERS: Final[dict[str, Callable[[FilterSQL, str, Any], str | None]]] = {
    "eq": _eq,
    "neq": _neq,
    "gt": _compare(">"),
    "gte": _compare(">="),
    "lt": _compare("<"),
    "lte": _compare("<="),
    "contains": _contains(False),
    "notContains": _contains(True),
    "startsWith": _affix("left"),
    "endsWith": _affix("right"),
    "isNull": lambda q, field, operand: None,  # compiled by FilterSQL.compile: a missing field is null too
    "isNotNull": lambda q, field, operand: None,
}
#: Ops Postgres does not compile: pre-selected by kind, decided by ``ops.match``.
PYTHON_ONLY: Final = check_compiler("postgres", _COMPILERS)


def compile_filters(filters: Sequence[Filter], first_param: int) -> tuple[list[str], list[Any], list[Filter]]:
    """The conditions for ``filters``, their parameters, and the filters ``match`` must re-check."""
    q = FilterSQL(first_param)
    conds = [q.compile(f) for f in filters]
    return conds, q.params, q.recheck
