"""One way down: the service layer speaks to the database only through repositories on an injected unit of
work — it never imports the database library or reaches into a session."""

from __future__ import annotations

import ast
from importlib.util import find_spec
from pathlib import Path

_SPEC = find_spec("app.service")
assert _SPEC is not None and _SPEC.submodule_search_locations
SERVICE = Path(next(iter(_SPEC.submodule_search_locations)))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_service_module_imports_sqlalchemy_or_touches_a_session():
    modules = sorted(SERVICE.glob("*.py"))
    assert len(modules) >= 8
    for module in modules:
        assert not {m for m in _imports(module) if m.split(".")[0] == "sqlalchemy"}, module.name
        assert "uow.session" not in module.read_text(encoding="utf-8"), module.name


def test_the_import_contracts_hold():
    """The contracts of [tool.importlinter] in pyproject.toml (what `lint-imports` checks in CI), in-process: the
    layers one way down, rules and persistence independent, schemas only at the edges, no cycle in app/."""
    from importlinter import api  # noqa: F401  (configures import-linter's adapters)
    from importlinter.application import use_cases

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    kept = use_cases.lint_imports(config_filename=str(pyproject), cache_dir=None, no_logo=True)
    assert kept == use_cases.SUCCESS, "a layer contract is broken: see the report above (or run lint-imports)"
