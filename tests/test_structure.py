"""The package's shape (issue 10): no import cycle, layers that import one way, filter compilers complete."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from motia_state import StateManager, ops
from motia_state.backends import BACKENDS, resolve
from motia_state.ops import FILTER_TABLE, Filter, check_compiler, match

PACKAGE = Path(__file__).resolve().parents[1] / "motia_state"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the motia_state modules it imports anywhere (top level or inside a function)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found.update(c for c in candidates if c in modules and c != name)
        graph[name] = found
    return graph


def _without_parent_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # Importing a.b.c also runs a/__init__ and a/b/__init__; an edge to a parent package is that, not a cycle.
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def test_no_import_cycle_in_the_package() -> None:
    graph = _without_parent_packages(_imports())
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_nothing_below_the_adapters_imports_an_adapter() -> None:
    graph = _imports()
    lower = ("motia_state.errors", "motia_state.urls", "motia_state.values", "motia_state.ops", "motia_state.adapter")
    for module, deps in graph.items():
        below = module in lower or module.startswith("motia_state.sql") or module == "motia_state.backends"
        if below:
            adapters = sorted(d for d in deps if d.startswith("motia_state.backends."))
            assert not adapters, f"{module} imports {adapters}"
        if module.startswith("motia_state.backends."):
            upward = sorted(d for d in deps if d.split(".")[1] in ("manager", "cli", "config", "transfer", "demo"))
            assert not upward, f"{module} imports {upward}: data flows manager -> adapter, never back"


def test_every_backend_scheme_resolves_to_its_backend() -> None:
    for backend in BACKENDS:
        for scheme in backend.schemes:
            assert resolve(f"{scheme}://host/x")[0] is backend


def test_every_filter_op_is_compiled_by_every_sql_dialect() -> None:
    from motia_state.backends.postgres import filters as pg_filters
    from motia_state.backends.sqlite import filters as sqlite_filters

    # A new op in ops.FILTER_TABLE is checked in Python until a dialect compiles it; today every one is compiled.
    assert frozenset() == sqlite_filters.PYTHON_ONLY
    assert frozenset() == pg_filters.PYTHON_ONLY


def test_a_compiler_for_an_unknown_op_fails_at_import() -> None:
    with pytest.raises(RuntimeError, match="unknown ops"):
        check_compiler("test", {"eq": None, "regex": None})


VALUES = {
    "a": {"name": "alpha", "n": 1},
    "b": {"name": "beta", "n": 2.5},
    "c": {"name": "gamma", "n": "2"},
    "d": {"name": ["x", "alpha"], "n": None},
    "e": {"other": True},
}
FILTERS = [
    Filter(("name",), "endsWith", "ta"),
    Filter(("name",), "contains", "alpha"),
    Filter(("n",), "gte", 2),
    Filter(("n",), "isNull"),
    Filter(("name",), "neq", "beta"),
]


@pytest.mark.parametrize("backend", [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("op", sorted({f.op for f in FILTERS}))
async def test_an_op_a_dialect_does_not_compile_is_decided_by_match(
    backend: str, op: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its compiler an op falls back to ops.match: the same rows, never another op's predicate."""
    from tests.conftest import FACTORIES

    if backend == "sqlite":
        from motia_state.backends.sqlite import filters as dialect
    else:
        from motia_state.backends.postgres import filters as dialect  # type: ignore[no-redef]
    monkeypatch.delitem(dialect._COMPILERS, op)
    state: StateManager = await FACTORIES[backend](tmp_path)
    try:
        await state.set_many("s", VALUES)
        for f in (f for f in FILTERS if f.op == op):
            raw = {"path": list(f.path), "op": f.op, **({"value": f.value} if f.value is not None else {})}
            expected = sorted(k for k, v in VALUES.items() if match(v, [f]))
            assert [i.key for i in await state.items("s", filters=[raw])] == expected
            assert [i.key for i in await state.items("s", filters=[raw], limit=1)] == expected[:1]
    finally:
        await state.close()


def test_ops_table_is_the_only_list_of_filter_ops() -> None:
    assert tuple(FILTER_TABLE) == ops.FILTER_OPS
    assert {"eq", "neq", "gt", "gte", "lt", "lte", "contains", "notContains", "startsWith", "endsWith"} | {
        "isNull",
        "isNotNull",
    } == set(FILTER_TABLE)
