"""The floor: a plain-Python evaluator of the same rules, read from the same RuleSet as the adapter.

Each rule's condition is turned into a Python predicate once, at construction; evaluating a change runs the
predicates in rule order over the change's facts (the adapter's own ``change_facts``), and the first that
holds decides. Semantics follow the durable_rules compilation in app/rules/compiler.py: a test of an absent
fact does not hold, globs are full matches, and ``equals`` compares with the fact's own type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from fnmatch import translate
from typing import Any

from app.rules.facts import change_facts
from app.rules.model import Condition, RuleSet

Facts = Mapping[str, Any]
Predicate = Callable[[Facts], bool]
_ABSENT = object()


def predicate(condition: Condition) -> Predicate:
    """A Python predicate over one change's facts, equivalent to the condition."""
    fact, test, argument = condition.fact, condition.test, condition.argument
    if test == "is":
        key = f"{fact}__kind"
        return lambda facts: facts.get(key) == argument
    if test == "matches":
        match = re.compile(translate(argument)).match
        return lambda facts: isinstance(value := facts.get(fact), str) and match(value) is not None
    if test == "equals":
        kind = type(argument)
        return lambda facts: type(value := facts.get(fact, _ABSENT)) is kind and value == argument
    if test == "not_one_of":
        allowed = frozenset(argument)
        return lambda facts: (value := facts.get(fact, _ABSENT)) is not _ABSENT and value not in allowed
    if test == "equals_fact":
        other = argument
        return lambda facts: fact in facts and other in facts and facts[fact] == facts[other]
    raise ValueError(f"unknown test {test!r}")


class ReferenceEvaluator:
    """Verdicts (the deciding rule id, or None when the change passes) for every change, in order."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self._rules = tuple((rule.id, predicate(rule.condition)) for rule in rule_set.rules)

    def evaluate(
        self, changes: Sequence[Mapping[str, Any]], *, enabled: frozenset[str], current: Mapping[str, str]
    ) -> list[str | None]:
        facts = change_facts(changes, catalog=self.rule_set.catalog, enabled=enabled, current=current)
        return [self.decide(record) for record in facts]

    def decide(self, facts: Facts) -> str | None:
        for rule_id, holds in self._rules:
            if holds(facts):
                return rule_id
        return None
