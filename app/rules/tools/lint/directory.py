"""Lint a rules/ directory: catalog, validation rules and regression cases, every mistake located; and the
contract (app/rules/tools/contract.py): validations that decide otherwise than the shipped ones are errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.rules.language.attributes import ATTRIBUTES_FILE
from app.rules.language.loader import (
    CATALOG_FILE,
    RULES_FILE,
    VALIDATION_FILE,
    Problem,
    RulesTree,
    read_sources,
    read_tree,
    shown_path,
)
from app.rules.language.model import RuleSet
from app.rules.language.parser import POLICY_FILE
from app.rules.tools.cases import CASES_DIR, Case, load_cases
from app.rules.tools.contract import contract_problems
from app.rules.tools.lint.semantic import semantic_problems
from app.rules.tools.lint.static_checks import rule_set_problems

DOCUMENTATION = {"README.md"}


@dataclass
class LintResult:
    """The loaded rule set (None when broken), its cases, and every problem found."""

    rule_set: RuleSet | None
    cases: list[Case] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.rule_set is not None and not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


def is_rules_file(name: str) -> bool:
    """Whether a path under a rules directory names one of its files: the four rule files, the documentation,
    or a case file (cases/*.yaml)."""
    parts = name.split("/")
    if parts[0] == CASES_DIR and len(parts) == 2 and name.endswith(".yaml"):
        return True
    return len(parts) == 1 and name in {CATALOG_FILE, ATTRIBUTES_FILE, RULES_FILE, POLICY_FILE, *DOCUMENTATION}


def _stray_files(rules_dir: Path, tree: RulesTree) -> list[Problem]:
    problems = []
    for name in sorted(tree):
        if is_rules_file(name):
            continue
        problems.append(
            Problem(
                shown_path(rules_dir, name),
                1,
                1,
                "-",
                "unexpected file (rules are catalog.yaml, attributes.yaml, validation.yaml, policies.yaml "
                "and cases/*.yaml)",
            )
        )
    return problems


def lint(rules_dir: Path, *, now: datetime | None = None, contract: bool = True) -> LintResult:
    """Load everything under rules_dir and collect every problem, in one pass: each file is read on its own,
    so one that does not parse hides nothing in the others, and the checks of the whole set run on what
    could be read. `now` (default: the current time) decides which windows have expired. `contract` False
    leaves the contract unchecked (`rules diff` compares any two sets; nothing it reads goes live)."""
    rules_dir = Path(rules_dir)
    if not rules_dir.is_dir():
        return LintResult(None, [], [Problem(str(rules_dir), 1, 1, "-", "no such directory")])
    tree = read_tree(rules_dir)  # one read: the version names exactly the bytes that were checked
    problems = _stray_files(rules_dir, tree)
    sources = read_sources(rules_dir, tree)
    problems += sources.problems
    as_read = sources.best_effort()
    if as_read is not None:
        problems += rule_set_problems(as_read, now=now or datetime.now(UTC))
        problems += semantic_problems(as_read)  # app/rules/tools/lint/semantic.py: over the finite input space
        validation_read = not any(p.path == shown_path(rules_dir, VALIDATION_FILE) for p in sources.problems)
        if contract and validation_read:  # a validation that does not parse is reported, not called dropped
            problems += contract_problems(as_read, rules_dir, tree)
    rule_set = as_read if as_read is not None and not sources.problems else None
    cases, case_problems = load_cases(
        rules_dir, rule_set, tree, rule_ids=sources.declared_ids, catalog=sources.catalog, attributes=sources.attributes
    )
    return LintResult(rule_set, cases, _file_by_file(problems + case_problems))


def _file_by_file(problems: list[Problem]) -> list[Problem]:
    """The problems of each file together, top to bottom, the files in the order they were first named."""
    order: dict[str, int] = {}
    for problem in problems:
        order.setdefault(problem.path, len(order))
    return sorted(problems, key=lambda p: (order[p.path], p.line, p.column))
