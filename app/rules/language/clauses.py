"""A condition as the rules are judged: alternatives (any of them) of literals (all of them), each literal a
test of the language or its negation. Lint refuses a condition with too many alternatives (ConditionTooLarge);
the compiler writes one durable rule per alternative; lint's checks and the input space read the literals.

This is part of the language, below the runtime: reading a rule (parser.py) needs to know whether its condition
is too large, without importing the compiler.
"""

from __future__ import annotations

from collections.abc import Iterator

from app.rules.language.model import (
    AccountTest,
    All,
    AnyOf,
    ChangeTest,
    Condition,
    Not,
    PermissionTest,
    Rule,
    TenantTest,
    Window,
)

MAX_CLAUSES = 64  # a condition whose all/any/not expand to more alternatives is refused by lint

Atom = ChangeTest | AccountTest | TenantTest | PermissionTest | Window
Literal = tuple[bool, Atom]  # (negated, atom)


class ConditionTooLarge(ValueError):
    """A condition expands to more alternatives than the engine should be given."""


def clauses(condition: Condition, window: Window | None = None) -> list[list[Literal]]:
    """The condition as alternatives (any of them), each a list of literals (all of them)."""
    found = _dnf(condition, negated=False)
    if len(found) > MAX_CLAUSES:  # a long any: is as many durable rules as a product of small ones
        raise ConditionTooLarge(f"the condition expands to more than {MAX_CLAUSES} alternatives")
    if window is not None:
        found = [[*clause, (False, window)] for clause in found]
    return found


def _dnf(condition: Condition, *, negated: bool) -> list[list[Literal]]:
    if isinstance(condition, Not):
        return _dnf(condition.part, negated=not negated)
    if isinstance(condition, All | AnyOf):
        conjunction = isinstance(condition, All) != negated  # De Morgan
        alternatives = [_dnf(part, negated=negated) for part in condition.parts]
        if not conjunction:
            return [clause for alternative in alternatives for clause in alternative]
        combined: list[list[Literal]] = [[]]
        for alternative in alternatives:
            combined = [left + right for left in combined for right in alternative]
            if len(combined) > MAX_CLAUSES:
                raise ConditionTooLarge(f"the condition expands to more than {MAX_CLAUSES} alternatives")
        return combined
    if isinstance(condition, PermissionTest) and condition.status == "close":
        opened = PermissionTest(condition.template, condition.head, condition.tail, condition.state, "open")
        return [[(not negated, opened)]]  # closed means: no fact says it is open
    return [[(negated, condition)]]


def rule_clauses(rule: Rule) -> list[list[Literal]]:
    """A rule's condition (and window) as alternatives of literals."""
    return clauses(rule.condition, rule.window)


def literals(rule: Rule) -> Iterator[Atom]:
    """Every atom a rule's condition tests (for analysis and the memo)."""
    for clause in rule_clauses(rule):
        for _, atom in clause:
            yield atom
