"""The layout's rules, checked on the source: no import cycles between modules,
and no module importing a private (_underscore) name from another package.

Every import counts, including those inside functions and under TYPE_CHECKING:
a cycle hidden in a function is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ENGINE.rglob("*.py"):
        parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package(module: str) -> str:
    """The package a module is in (a package's __init__ is in itself)."""
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


@functools.cache
def _imports(module: str) -> list[tuple[str, str]]:
    """(imported engine module, imported name or "") for every import in `module`."""
    tree = ast.parse(MODULES[module].read_text())
    out: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.startswith("engine")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(module).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("engine"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, "") if sub in MODULES else (target, alias.name))
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_private_name_imported_across_packages() -> None:
    crossings = []
    for module in MODULES:
        for target, name in _imports(module):
            private = name.startswith("_") or any(p.startswith("_") for p in target.split("."))
            if private and _package(target) != _package(module):
                crossings.append(f"{module} imports {target}{':' + name if name else ''}")
    assert crossings == []


def test_imports_are_resolved_as_python_would() -> None:
    # The checks above are only as good as this resolution.
    found = dict(_imports("engine.execution.executor"))
    assert "engine.execution.attempts" in found
    assert "engine.errors" in found
    assert all(t in MODULES for t in found)


def test_the_module_map_names_every_module() -> None:
    # docs/architecture.md maps each package's modules; a module added without
    # a line there is a module a newcomer cannot place.
    page = (ENGINE.parent / "docs" / "architecture.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2]
        for line in page.splitlines()
        if line.startswith("| `engine/") or line.startswith("| `")
    }
    missing = []
    for path in MODULES.values():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        package = str(path.parent.relative_to(ENGINE.parent)) + "/"
        package = package.removeprefix("engine/") if package != "engine/" else package
        if f"`{path.name}`" not in rows.get(package, ""):
            missing.append(str(path.relative_to(ENGINE.parent)))
    assert missing == []
