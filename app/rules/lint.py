"""Lint a rules/ directory: catalog, validation rules and regression cases, every mistake located."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.rules.analysis import semantic_problems
from app.rules.attributes import ATTRIBUTES_FILE
from app.rules.cases import CASES_DIR, Case, load_cases
from app.rules.language import POLICY_FILE
from app.rules.loader import (
    CATALOG_FILE,
    RULES_FILE,
    Problem,
    RuleSetInvalid,
    RulesTree,
    load_rule_set,
    read_tree,
    shown_path,
)
from app.rules.model import RuleSet

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


def _stray_files(rules_dir: Path, tree: RulesTree) -> list[Problem]:
    expected = {CATALOG_FILE, ATTRIBUTES_FILE, RULES_FILE, POLICY_FILE, *DOCUMENTATION}
    problems = []
    for name in sorted(tree):
        parts = name.split("/")
        if parts[0] == CASES_DIR and len(parts) == 2 and name.endswith(".yaml"):
            continue
        if len(parts) == 1 and name in expected:
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


def lint(rules_dir: Path) -> LintResult:
    """Load everything under rules_dir and collect every problem."""
    rules_dir = Path(rules_dir)
    if not rules_dir.is_dir():
        return LintResult(None, [], [Problem(str(rules_dir), 1, 1, "-", "no such directory")])
    tree = read_tree(rules_dir)  # one read: the version names exactly the bytes that were checked
    problems = _stray_files(rules_dir, tree)
    try:
        rule_set: RuleSet | None = load_rule_set(rules_dir, tree)
    except RuleSetInvalid as exc:
        rule_set = None
        problems += exc.problems
    problems += semantic_problems(rule_set) if rule_set is not None else []  # app/rules/analysis.py
    cases, case_problems = load_cases(rules_dir, rule_set, tree)
    return LintResult(rule_set, cases, problems + case_problems)


def load_clean(rules_dir: Path) -> RuleSet:
    """The rule set of rules_dir, or RuleSetInvalid with every lint problem (cases included)."""
    result = lint(rules_dir)
    if not result.clean or result.rule_set is None:
        raise RuleSetInvalid(result.errors)
    return result.rule_set
