"""Compile a RuleSet into a durable_rules ruleset definition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.rules.model import Condition, RuleSet

PASS_RULE_ID = "pass"


def glob_to_engine_regex(glob: str) -> str:
    """Translate a glob into durable_rules' regex dialect, which has no backslash escapes."""
    out = []
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch.isalnum() or ch == "_":
            out.append(ch)
        else:
            out.append(f"[{ch}]")
    return "".join(out)


def compile_condition(condition: Condition) -> dict[str, Any]:
    """One condition as a durable_rules expression over the event's facts."""
    fact, test, arg = condition.fact, condition.test, condition.argument
    if test == "is":
        return {f"{fact}__kind": arg}
    if test == "matches":
        return {"$mt": {fact: glob_to_engine_regex(arg)}}
    if test == "equals":
        return {fact: arg}
    if test == "not_one_of":
        return {"$and": [{"$ex": {fact: 1}}, *({"$neq": {fact: value}} for value in arg)]}
    if test == "equals_fact":
        return {"$and": [{"$ex": {fact: 1}}, {"$ex": {arg: 1}}, {fact: {"$m": arg}}]}
    raise ValueError(f"unknown test {test!r}")


def compile_rule_set(rule_set: RuleSet, action: Callable[[str], Callable[[Any], None]]) -> dict[str, dict[str, Any]]:
    """The ruleset definition: one durable rule per rule, salience by position, and a final pass rule.

    `action(rule_id)` returns the consequent that records which rule decided the event.
    """
    definition: dict[str, dict[str, Any]] = {}
    for position, rule in enumerate(rule_set.rules, start=1):
        definition[rule.id] = {
            "all": [{"m": compile_condition(rule.condition)}],
            "pri": position,
            "run": action(rule.id),
        }
    # Every event must be handled, or the engine raises MessageNotHandledException.
    definition[PASS_RULE_ID] = {
        "all": [{"m": {"$ex": {"index": 1}}}],
        "pri": len(rule_set.rules) + 1,
        "run": action(PASS_RULE_ID),
    }
    return definition
