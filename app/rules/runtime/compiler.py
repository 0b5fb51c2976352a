"""Compile a RuleSet into one durable_rules ruleset whose rules correlate the facts of a request.

A request is judged in one engine session holding, in this order:
  x  the context: tenant, account status and attributes, the time ("now", Unix seconds)
  p  one fact per permission of the account that is open before or after the request (type, head, tail,
     before, after; a permission with no fact is closed both before and after)
  r  a copy of each change, only for rule sets that negate a glob or a same_as test (see below)
  c  one fact per change (the facts of rules/README.md), judged by every rule
Each rule's condition is turned into a disjunction of conjunctions; each conjunction becomes one durable rule
joining the change `c` with the context and permission facts it names: a relation such as
`permission: stock.{market}, after: open` is a join `head == "stock" and tail == c.market` that the engine
evaluates. A count (`count: {permission: options.*, after: open, more_than: 3}`) is a number the adapter
puts on the change (`count_k` per distinct pattern, app/rules/runtime/facts.py count_facts: 0 unless the change
itself opens a permission the pattern names), compared inline: `count_k > 3`, negated `count_k <= 3`.
Negated context and permission tests are the engine's `$not` patterns. A fact asserted after a
change cannot retract a verdict already reached, so the context and permissions are asserted first; and a
`$not` over the change itself is unreliable within the insertion of that very fact, so negations of a glob
or same_as test look at the earlier copy `r` instead. Each durable rule turns off the engine's distinct
correlation (`dist: 0`): with it on, one fact cannot serve two patterns of a match, so a `$not` over the
context fact misses the very fact a positive test of the same clause matched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from app.rules.language.clauses import (
    Clause,
    CountPattern,
    Test,
    context_key,
    count_key,
    count_patterns,
    rule_set_clauses,
)
from app.rules.language.model import ChangeTest, CountTest, Match, PermissionTest, RuleSet, Window

PASS_RULE_ID = "pass"
CONTEXT, PERMISSION, REFERENCE, CHANGE = "x", "p", "r", "c"
NEVER = "~never"  # no fact has this type: a pattern on it makes a sink that never fires


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


def _is_glob(value: object) -> bool:
    return isinstance(value, str) and ("*" in value or "?" in value)


def _value(key: str, value: str | bool) -> dict[str, Any]:
    if _is_glob(value):
        return {"$mt": {key: glob_to_engine_regex(str(value))}}
    return {key: value}


def _one_of(key: str, values: tuple[str | bool, ...]) -> dict[str, Any]:
    terms = [_value(key, v) for v in values]
    return terms[0] if len(terms) == 1 else {"$or": terms}


def _match(key: str, match: Match) -> dict[str, Any]:
    if match.kind is not None:
        return {f"{key}__kind": match.kind}
    if match.same_as is not None:
        return {"$and": [{"$ex": {key: 1}}, {"$ex": {match.same_as: 1}}, {key: {"$m": match.same_as}}]}
    return _one_of(key, match.values)


def _negated_inline(key: str, match: Match) -> dict[str, Any] | None:
    """not(match) within the change's own pattern, when the engine can say it there (else None)."""
    if match.kind is not None:
        return {"$neq": {f"{key}__kind": match.kind}}
    if match.same_as is not None or any(_is_glob(v) for v in match.values):
        return None
    different = [{"$neq": {key: v}} for v in match.values]
    return {"$or": [{"$nex": {key: 1}}, different[0] if len(different) == 1 else {"$and": different}]}


def _part(key: str, spec: str) -> tuple[dict[str, Any], str | None]:
    """A term on a permission's head or tail, and the change field a placeholder binds (if any)."""
    if spec.startswith("{"):
        bound = spec[1:-1]
        return {key: {CHANGE: bound}}, bound
    return _value(key, spec), None


def _and(terms: list[dict[str, Any]]) -> dict[str, Any]:
    return terms[0] if len(terms) == 1 else {"$and": terms}


@dataclass
class Compiled:
    """The durable_rules definition of a rule set, its clauses (each judged by one durable rule, each saying
    what it reads: app/rules/language/clauses.py), and what a session must be given for them."""

    definition: dict[str, dict[str, Any]]
    rule_of: dict[str, str]  # durable rule name -> rule id
    clauses: tuple[Clause, ...] = ()
    needs_references: bool = False  # some clause negates a glob or same_as test of the change

    @cached_property
    def context_keys(self) -> frozenset[str]:
        """What the context fact must carry."""
        return frozenset().union(*(c.context_keys for c in self.clauses))

    @cached_property
    def reads_time(self) -> bool:
        return any(c.reads_time for c in self.clauses)

    @cached_property
    def counts(self) -> tuple[CountPattern, ...]:
        """The distinct count patterns, the k-th carried by each change as `count_k`."""
        return count_patterns(self.clauses)

    @cached_property
    def relations(self) -> frozenset[tuple[str, str, str]]:
        """(head, tail, before|after) tested open, placeholders as written."""
        return frozenset().union(*(c.relations for c in self.clauses))

    @cached_property
    def reads_permissions(self) -> bool:
        return bool(self.relations)

    @cached_property
    def change_fields(self) -> frozenset[str]:
        """The change facts a test or placeholder reads."""
        return frozenset().union(*(c.change_fields for c in self.clauses))

    @cached_property
    def bound_fields(self) -> frozenset[str]:
        """The change fields a relation's placeholders bind."""
        return frozenset(
            name for c in self.clauses for t in c if isinstance(t.atom, PermissionTest) for name in t.atom.placeholders
        )


class _Clause:
    """Builds one durable rule (one alternative of one rule's condition)."""

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.change: list[dict[str, Any]] = [{"t": CHANGE}]
        self.context: list[dict[str, Any]] = []
        self.patterns: list[dict[str, Any]] = []
        self.counter = itertools.count(1)

    def add(self, test: Test) -> None:
        negated, atom = test
        if isinstance(atom, ChangeTest):
            self._change(negated, atom)
        elif isinstance(atom, Window):
            if atom.start is not None:
                self.context.append({"$gte": {"now": atom.start.timestamp()}})
            if atom.end is not None:
                self.context.append({"$lt": {"now": atom.end.timestamp()}})
        elif isinstance(atom, PermissionTest):
            self._permission(negated, atom)
        elif isinstance(atom, CountTest):
            key = count_key(self.compiled.counts.index(atom.pattern))
            self.change.append({"$lte" if negated else "$gt": {key: atom.more_than}})
        else:  # the tenant, the account's status or an attribute: a value of the context
            term = _match(context_key(atom), atom.match)
            if negated:
                self._pattern(f"{CONTEXT}{next(self.counter)}$not", [{"t": CONTEXT}, term])
            else:
                self.context.append(term)

    def _change(self, negated: bool, test: ChangeTest) -> None:
        if not negated:
            self.change.append(_match(test.field, test.match))
            return
        inline = _negated_inline(test.field, test.match)
        if inline is not None:
            self.change.append(inline)
            return
        self.compiled.needs_references = True
        same = {"index": {CHANGE: "index"}}
        self._pattern(f"{REFERENCE}{next(self.counter)}$not", [{"t": REFERENCE}, same, _match(test.field, test.match)])

    def _permission(self, negated: bool, test: PermissionTest) -> None:
        terms: list[dict[str, Any]] = [{"t": PERMISSION}]
        for key, spec in (("head", test.head), ("tail", test.tail)):
            term, bound = _part(key, spec)
            terms.append(term)
            if bound is not None:
                self.change.append({"$ex": {bound: 1}})  # a placeholder only binds for a change that has it
        terms.append({test.state: "open"})
        name = f"{PERMISSION}{next(self.counter)}"
        self._pattern(f"{name}$not" if negated else name, terms)

    def _pattern(self, name: str, terms: list[dict[str, Any]]) -> None:
        self.patterns.append({name: _and(terms)})

    def definition(self) -> list[dict[str, Any]]:
        patterns: list[dict[str, Any]] = [{CHANGE: _and(self.change)}]
        if self.context:
            patterns.append({CONTEXT: _and([{"t": CONTEXT}, *self.context])})
        return patterns + self.patterns


def compile_rule_set(rule_set: RuleSet, action: Callable[[str], Callable[[Any], None]]) -> Compiled:
    """The ruleset definition: one durable rule per alternative of each rule, a pass rule that sees every
    change, and sinks so that context, permission and reference facts are always handled.

    `action(name)` returns the consequent that records which durable rule held for which change.
    """
    compiled = Compiled(definition={}, rule_of={}, clauses=rule_set_clauses(rule_set.rules))
    for clause in compiled.clauses:
        builder = _Clause(compiled)
        for test in clause:
            builder.add(test)
        name = clause.name
        # dist 0: by default the engine binds each fact to at most one pattern of a match, so a $not never
        # sees the context or permission fact a positive pattern of the same clause already holds
        # (tenant t2 and not professional, for one context fact), and two tests of one permission
        # (before: open, after: open) would need two facts.
        compiled.definition[name] = {"all": builder.definition(), "run": action(name), "dist": 0}
        compiled.rule_of[name] = clause.rule.id
    # Every change fires this once: proof it was judged (the engine swallows errors in consequents).
    compiled.definition[PASS_RULE_ID] = {"all": [{CHANGE: {"t": CHANGE}}], "run": action(PASS_RULE_ID)}
    for kind in (CONTEXT, PERMISSION, REFERENCE):  # a fact no pattern matches makes the engine raise
        compiled.definition[f"~sink-{kind}"] = {
            "all": [{"m": {"t": kind}}, {"n": {"t": NEVER}}],
            "run": action(f"~sink-{kind}"),
        }
    return compiled
