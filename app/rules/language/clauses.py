"""The one description of what a condition reads and tests, shared by every part that looks inside a rule.

A condition is judged as alternatives (clauses, any of them) of tests (all of them), each test a check of the
language or its negation. Per test this module says which facts it reads (fields of the change, values of
the context, the time, the permissions a relation names, the count of a pattern: `count_k` of the change record,
COUNT_FIELDS) and which values it compares them with; per clause,
the union of that. The compiler writes one durable rule per clause from it, the memo keys what a clause reads,
the input space enumerates it, lint checks it and explain shows it. A new fact or operator is taught here (and
to the compiler, which tells the engine): nothing else walks a condition.

Lint refuses a condition with too many alternatives (ConditionTooLarge) while a rule is read, before any
engine sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from app.rules.language.model import (
    PART_FIELDS,
    AccountTest,
    All,
    AnyOf,
    ChangeTest,
    Condition,
    CountTest,
    Not,
    PermissionTest,
    Rule,
    TenantTest,
    Window,
)

MAX_CLAUSES = 64  # a condition whose all/any/not expand to more alternatives is refused by lint
# Change fields a clause's plain positive test can require a value of, known before the engine sees the change.
GUARD_FIELDS = frozenset({"permission_type", "permission_status", *PART_FIELDS})
# What the change's record derives from its permission type alone (its text and kind, its parts, the catalog).
TYPE_FIELDS = frozenset({"permission_type", *PART_FIELDS, "in_catalog"})

Atom = ChangeTest | AccountTest | TenantTest | PermissionTest | CountTest | Window
Relation = tuple[str, str, str]  # (head, tail, state): a relation tested open, placeholders as written
CountPattern = tuple[str, str]  # (head, tail) of a count, placeholders as written
# What a count reads of the change besides its placeholders: whether the change itself opens a permission the
# pattern names (its type, status, first mention, enablement; app/rules/runtime/facts.py count_facts).
COUNT_FIELDS = frozenset({"permission_type", "permission_status", "named_earlier", "enabled_for_tenant"})


class ConditionTooLarge(ValueError):
    """A condition expands to more alternatives than the engine should be given."""


def context_key(test: AccountTest | TenantTest) -> str:
    """The name under which the request's context holds what a test reads: tenant, account_status, a_<name>."""
    if isinstance(test, TenantTest):
        return "tenant"
    return "account_status" if test.field == "status" else f"a_{test.field}"


def atoms(condition: Condition) -> Iterator[ChangeTest | AccountTest | TenantTest | PermissionTest | CountTest]:
    """Every test of a condition, in the order it is written."""
    if isinstance(condition, All | AnyOf):
        for part in condition.parts:
            yield from atoms(part)
    elif isinstance(condition, Not):
        yield from atoms(condition.part)
    else:
        yield condition


class Test(NamedTuple):
    """One test of a clause, or its negation, and what it reads."""

    negated: bool
    atom: Atom

    @property
    def change_fields(self) -> frozenset[str]:
        """The change fields it reads: a test's field and same_as, a relation's placeholders."""
        atom = self.atom
        if isinstance(atom, ChangeTest):
            return frozenset(f for f in (atom.field, atom.match.same_as) if f is not None)
        if isinstance(atom, PermissionTest):
            return frozenset(atom.placeholders)
        if isinstance(atom, CountTest):
            return COUNT_FIELDS | frozenset(atom.placeholders)
        return frozenset()

    @property
    def context_key(self) -> str | None:
        """The context value it reads (tenant, account_status, a_<attribute>), if any."""
        return context_key(self.atom) if isinstance(self.atom, AccountTest | TenantTest) else None

    @property
    def relation(self) -> Relation | None:
        """The relation it tests open, if any (a closed one is the negation of the open one)."""
        atom = self.atom
        return (atom.head, atom.tail, atom.state) if isinstance(atom, PermissionTest) else None

    @property
    def counted(self) -> CountTest | None:
        """The count it bounds, if any."""
        return self.atom if isinstance(self.atom, CountTest) else None

    @property
    def reads_time(self) -> bool:
        return isinstance(self.atom, Window)

    @property
    def compared(self) -> str | None:
        """The fact its values are compared with: a change field, or a context key (tenant, a_residency)."""
        atom = self.atom
        if isinstance(atom, ChangeTest):
            return atom.field
        return context_key(atom) if isinstance(atom, AccountTest | TenantTest) else None

    @property
    def values(self) -> tuple[str | bool, ...]:
        """The values it compares its fact with (text, globs, true/false); none for a kind or same_as test."""
        atom = self.atom
        return atom.match.values if isinstance(atom, ChangeTest | AccountTest | TenantTest) else ()

    @property
    def guard(self) -> tuple[str, frozenset[str]] | None:
        """For a plain positive test of a text field of the change (`product: options`), the field and the values
        it must have for the test to hold; None for any other test."""
        atom = self.atom
        if self.negated or not isinstance(atom, ChangeTest) or atom.field not in GUARD_FIELDS:
            return None
        match = atom.match
        if match.kind is not None or match.same_as is not None or not match.values:
            return None
        if not all(isinstance(v, str) and "*" not in v and "?" not in v for v in match.values):
            return None
        return atom.field, frozenset(str(v) for v in match.values)

    def decided_by(self, change: Mapping[str, Any], known: frozenset[str]) -> bool | None:
        """Its truth for a change record (app/rules/runtime/facts.py) of which only the `known` fields are fixed:
        True or False when it reads only those, else None. A relation whose placeholder the change cannot bind
        is False, negated or not (the compiler requires the bound field). Used to see which clauses a type
        leaves alive; a verdict is always the engine's."""
        atom = self.atom
        if isinstance(atom, PermissionTest):
            return None if atom.binds(change) else False
        if isinstance(atom, CountTest):
            return None if count_may_apply(atom, change) else self.negated
        if not isinstance(atom, ChangeTest) or not self.change_fields <= known:
            return None
        return atom.match.holds_in(change, atom.field) != self.negated


def count_may_apply(count: CountTest, change: Mapping[str, Any]) -> bool:
    """Whether a change of this record's type can be charged by the count: its type is text and the pattern,
    placeholders bound from it, names the type itself (else the count fact is 0 and the count never holds)."""
    if change.get("permission_type__kind") != "text":
        return False
    parts = [change[name] for name in ("product", "market", "group", "name") if name in change]
    return len(parts) == 2 and count.names(parts[0], parts[1], change)


def count_caps(clauses: Iterable[Clause]) -> dict[CountPattern, int]:
    """Per count pattern, its largest bound + 1: every count test reads a count at or above it the same way."""
    caps: dict[CountPattern, int] = {}
    for count in (c for clause in clauses for c in clause.counts):
        caps[count.pattern] = max(caps.get(count.pattern, 0), count.more_than + 1)
    return caps


def count_patterns(clauses: Iterable[Clause]) -> tuple[CountPattern, ...]:
    """The distinct patterns some clause counts, in a fixed order: the k-th is the change record's `count_k`
    (app/rules/runtime/facts.py)."""
    return tuple(sorted({c.pattern for clause in clauses for c in clause.counts}))


def count_key(index: int) -> str:
    """The change record's field holding the k-th count pattern's count."""
    return f"count_{index}"


Literal = Test  # the name the DNF literature gives it


@dataclass(frozen=True)
class Clause:
    """One alternative of a rule's condition (its window included): tests that must all hold, and what they read."""

    rule: Rule
    number: int  # among the rule's alternatives
    tests: tuple[Test, ...]

    def __iter__(self) -> Iterator[Test]:
        return iter(self.tests)

    def __len__(self) -> int:
        return len(self.tests)

    @property
    def name(self) -> str:
        """The durable rule that judges it."""
        return f"{self.rule.id}#{self.number}"

    @cached_property
    def change_fields(self) -> frozenset[str]:
        return frozenset().union(*(t.change_fields for t in self.tests))

    @cached_property
    def context_keys(self) -> frozenset[str]:
        return frozenset(k for t in self.tests if (k := t.context_key) is not None)

    @cached_property
    def relations(self) -> frozenset[Relation]:
        return frozenset(r for t in self.tests if (r := t.relation) is not None)

    @cached_property
    def reads_time(self) -> bool:
        return any(t.reads_time for t in self.tests)

    @cached_property
    def counts(self) -> tuple[CountTest, ...]:
        """The counts it bounds (negated or not)."""
        return tuple(c for t in self.tests if (c := t.counted) is not None)

    @cached_property
    def guards(self) -> tuple[tuple[str, frozenset[str]], ...]:
        """The change values it needs to hold at all: per plain positive test of a text field, its values."""
        return tuple(g for t in self.tests if (g := t.guard) is not None)


def clauses(condition: Condition, window: Window | None = None) -> list[list[Test]]:
    """The condition as alternatives (any of them), each a list of tests (all of them)."""
    found = _dnf(condition, negated=False)
    if len(found) > MAX_CLAUSES:  # a long any: is as many durable rules as a product of small ones
        raise ConditionTooLarge(f"the condition expands to more than {MAX_CLAUSES} alternatives")
    if window is not None:
        found = [[*clause, Test(False, window)] for clause in found]
    return found


def _dnf(condition: Condition, *, negated: bool) -> list[list[Test]]:
    if isinstance(condition, Not):
        return _dnf(condition.part, negated=not negated)
    if isinstance(condition, All | AnyOf):
        conjunction = isinstance(condition, All) != negated  # De Morgan
        alternatives = [_dnf(part, negated=negated) for part in condition.parts]
        if not conjunction:
            return [clause for alternative in alternatives for clause in alternative]
        combined: list[list[Test]] = [[]]
        for alternative in alternatives:
            combined = [left + right for left in combined for right in alternative]
            if len(combined) > MAX_CLAUSES:
                raise ConditionTooLarge(f"the condition expands to more than {MAX_CLAUSES} alternatives")
        return combined
    if isinstance(condition, PermissionTest) and condition.status == "close":
        opened = PermissionTest(condition.template, condition.head, condition.tail, condition.state, "open")
        return [[Test(not negated, opened)]]  # closed means: no fact says it is open
    return [[Test(negated, condition)]]


def rule_clauses(rule: Rule) -> list[Clause]:
    """A rule's condition (and window) as its alternatives."""
    return [Clause(rule, k, tuple(tests)) for k, tests in enumerate(clauses(rule.condition, rule.window))]


def rule_set_clauses(rules: tuple[Rule, ...]) -> tuple[Clause, ...]:
    """Every alternative of every rule, in file order."""
    return tuple(clause for rule in rules for clause in rule_clauses(rule))
