"""The layout of app/rules/ is its architecture: language, then runtime, then tools, then lifecycle, each
importing only the packages before it, and no import cycle among the modules (see app/rules/__init__.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import PROJECT_ROOT

RULES = PROJECT_ROOT / "app" / "rules"
PACKAGES = ("language", "runtime", "tools", "lifecycle")  # each may import only the ones before it


def _module(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every app.rules module a file imports, at any depth (a function-level import counts too)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from app.rules.x import module`
    modules = {_module(p) for p in RULES.rglob("*.py")}
    return {name for name in found if name in modules and name != module}


GRAPH = {_module(path): _imported(path) for path in RULES.rglob("*.py")}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in PACKAGES else None


def test_every_module_is_in_one_of_the_four_packages():
    assert {m for m in GRAPH if _package(m) is None} == {"app.rules"}


def test_each_package_imports_only_the_packages_before_it():
    wrong = []
    for module, imported in GRAPH.items():
        rank = PACKAGES.index(_package(module)) if _package(module) else len(PACKAGES)
        for name in imported:
            target = _package(name)
            if target is not None and PACKAGES.index(target) > rank:
                wrong.append(f"{module} imports {name}")
    assert sorted(wrong) == []


def test_runtime_imports_no_tool_and_no_lifecycle_and_language_nothing_of_runtime():
    for module, imported in GRAPH.items():
        seen = {_package(name) for name in imported}
        if _package(module) == "language":
            assert seen <= {"language", None}, module
        if _package(module) == "runtime":
            assert not seen & {"tools", "lifecycle"}, module
        if _package(module) == "tools":
            assert "lifecycle" not in seen, module


def test_no_import_cycle_among_the_modules():
    # Importing a package runs its __init__, but none of ours imports anything: edges to packages are left out.
    graph = {
        m: {n for n in deps if not (RULES / Path(*n.split(".")[2:]) / "__init__.py").exists()}
        for m, deps in GRAPH.items()
    }
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        path.append(module)
        for name in sorted(graph[module]):
            visit(name)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
