"""Rule coverage of the regression cases (`permctl rules test --coverage`), read from the decision pipeline.

A rule **fires** in a case when decide() makes it the rule that decides the request (a validation or a deny
policy: its outcome is the answer), or reports it (a warn policy in data.warnings, a dryrun policy among the
dryrun hits). A rule **passes** in a case when it judged a change (the change was reached and no earlier rule
decided it) and its condition did not hold there, which includes a policy outside its window. Coverage is
the share of those two sides that some case covers: (rules that fired + rules that passed) / (2 * rules).
Nothing here evaluates a condition: which rules held, and which judged a change, come from the Decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.rules.language.model import Rule
from app.rules.runtime.decision import Decision


@dataclass(frozen=True)
class Exercised:
    """What one decision did with each rule: the ones that fired, the ones that judged a change and let it pass."""

    fired: frozenset[str] = frozenset()
    let_pass: frozenset[str] = frozenset()


NOTHING = Exercised()


def exercised(decision: Decision) -> Exercised:
    """The rules a decision fired and the rules it saw let a change pass."""
    fired = {hit.rule.id for hit in (*decision.warnings, *decision.dryruns)}
    if decision.denial is not None:
        fired.add(decision.denial.rule.id)
    let_pass = {
        rule.id for index, held in enumerate(decision.held) for rule in decision.reached(index) if rule.id not in held
    }
    return Exercised(frozenset(fired), frozenset(let_pass))


@dataclass(frozen=True)
class RuleCoverage:
    """One rule: whether some case made it fire, and whether some case made it pass."""

    rule_id: str
    fired: bool
    passed: bool


@dataclass(frozen=True)
class Coverage:
    """Per rule, in rule-set order, what the cases covered; and the share covered."""

    rules: tuple[RuleCoverage, ...]

    @property
    def percent(self) -> float:
        """(rules that fired + rules that passed) / (2 * rules), as a percentage (100 with no rules)."""
        if not self.rules:
            return 100.0
        covered = sum(r.fired for r in self.rules) + sum(r.passed for r in self.rules)
        return 100.0 * covered / (2 * len(self.rules))

    @property
    def never_fired(self) -> list[str]:
        """The rules no case makes fire."""
        return [r.rule_id for r in self.rules if not r.fired]

    @property
    def never_passed(self) -> list[str]:
        """The rules no case makes pass."""
        return [r.rule_id for r in self.rules if not r.passed]


def coverage_of(rules: Sequence[Rule], each: Iterable[Exercised]) -> Coverage:
    """The coverage of every rule by the decisions of the cases."""
    fired: set[str] = set()
    let_pass: set[str] = set()
    for found in each:
        fired |= found.fired
        let_pass |= found.let_pass
    return Coverage(tuple(RuleCoverage(r.id, r.id in fired, r.id in let_pass) for r in rules))


def shown_percent(value: float) -> str:
    """A percentage as printed: one decimal, never rounded up to a threshold it does not reach."""
    return f"{int(value * 10) / 10:.1f}%"


def table(coverage: Coverage) -> list[str]:
    """The coverage as text lines: rule id, fired, passed; then the summary."""
    width = max((len(r.rule_id) for r in coverage.rules), default=4)
    lines = [f"{'rule':<{width}}  fired  passed"]
    for r in coverage.rules:
        lines.append(f"{r.rule_id:<{width}}  {'yes' if r.fired else 'NO':<5}  {'yes' if r.passed else 'NO'}")
    fired = sum(r.fired for r in coverage.rules)
    passed = sum(r.passed for r in coverage.rules)
    total = len(coverage.rules)
    lines.append(
        f"coverage {shown_percent(coverage.percent)}: {fired}/{total} rules fired, {passed}/{total} rules passed"
    )
    return lines
