"""Whether a linted rule set may go live: every regression case under rules/cases/ passes.

The service, `permctl rules reload` and the server's start-up refuse a set whose cases fail exactly as they
refuse one that does not lint: a set that refuses a close its own cases say must succeed is not run. The cases
are cheap to run (about 60 cases in 20-50 ms, against 150-300 ms to lint), so every worker runs them on
every reload rather than trusting that someone ran `permctl rules test`.
"""

from __future__ import annotations

from app.rules.language.model import RuleSet
from app.rules.language.source import Problem, RuleSetInvalid
from app.rules.tools.cases import Case, CaseResult, run_cases


class CasesFailed(RuleSetInvalid):
    """The rule set lints clean but some of its regression cases fail; carries each as a located problem."""

    def __init__(self, failures: list[CaseResult]) -> None:
        super().__init__([case_problem(result) for result in failures])
        self.failing_cases = tuple(result.case.name for result in failures)


def case_problem(result: CaseResult) -> Problem:
    """A failing case as a problem at the case's line, naming the case and what differed."""
    case = result.case
    return Problem(case.path, case.line, 1, case.name, "case fails: " + "; ".join(result.mismatches))


def failing_cases(rule_set: RuleSet, cases: list[Case]) -> list[CaseResult]:
    """The cases the rule set does not answer as they expect, in file order."""
    return [result for result in run_cases(rule_set, cases).results if not result.passed]


def require_passing(rule_set: RuleSet, cases: list[Case]) -> None:
    """Raise CasesFailed unless every case passes."""
    failures = failing_cases(rule_set, cases)
    if failures:
        raise CasesFailed(failures)
