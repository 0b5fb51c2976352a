"""The go-live gate: a rule set may go live when it lints clean, keeps the contract, and every regression case under
rules/cases/ passes.

Keeping the contract (SPEC §7b, app/rules/tools/contract.py) is part of linting clean: a set whose validations
decide any input of its input space otherwise than the shipped validations (dropped, reordered, narrowed,
widened or reworded) is refused with the clause and an input that shows it, so it never goes live; a running
service keeps its last good set and reports why (last_reload_error in /readyz).

Publishing (`permctl rules publish`), every worker taking a publication, and the server's start-up refuse a set
whose cases fail exactly as they refuse one that does not lint: a set that refuses a close its own cases say must
succeed is not run. The cases are cheap to run (about 60 cases in 20-50 ms, against 150-300 ms to lint), so every
worker runs them on every publication it takes rather than trusting that someone ran `permctl rules test`.
"""

from __future__ import annotations

from pathlib import Path

from app.rules.language.model import RuleSet
from app.rules.language.source import Problem, RuleSetInvalid
from app.rules.tools.cases import Case, CaseResult, RequestLoader, run_cases
from app.rules.tools.lint.directory import lint


class CasesFailed(RuleSetInvalid):
    """The rule set lints clean but some of its regression cases fail; carries each as a located problem."""

    def __init__(self, failures: list[CaseResult]) -> None:
        super().__init__([case_problem(result) for result in failures])
        self.failing_cases = tuple(result.case.name for result in failures)


def case_problem(result: CaseResult) -> Problem:
    """A failing case as a problem at the case's line, naming the case and what differed."""
    case = result.case
    return Problem(case.path, case.line, 1, case.name, "case fails: " + "; ".join(result.mismatches))


def failing_cases(rule_set: RuleSet, cases: list[Case], load_request: RequestLoader) -> list[CaseResult]:
    """The cases the rule set does not answer as they expect, in file order (requests read by load_request, the
    API's own loader: see app/rules/tools/cases.py)."""
    return [result for result in run_cases(rule_set, cases, load_request).results if not result.passed]


def require_passing(rule_set: RuleSet, cases: list[Case], load_request: RequestLoader) -> None:
    """Raise CasesFailed unless every case passes."""
    failures = failing_cases(rule_set, cases, load_request)
    if failures:
        raise CasesFailed(failures)


def load_clean(rules_dir: Path, load_request: RequestLoader) -> RuleSet:
    """The rule set of rules_dir if it may go live: it lints clean (cases and the contract included) and every
    regression case passes. Otherwise RuleSetInvalid with every lint error, or CasesFailed with every failing
    case."""
    result = lint(rules_dir, contract=True)
    if not result.clean or result.rule_set is None:
        raise RuleSetInvalid(result.errors)
    require_passing(result.rule_set, result.cases, load_request)
    return result.rule_set
