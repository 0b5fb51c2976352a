"""An exact judge of the compiled rules in plain Python: which rules hold for a change, given the facts the
durable_rules engine would be given (app/rules/runtime/facts.py), literal by literal as
app/rules/runtime/compiler.py writes them for the engine. It judges the thousands of points of an input space
(app/rules/tools/input_space/space.py) in well under a second; tests/rules/tools/test_input_space.py proves
it agrees with the engine on every point of the shipped sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from app.rules.language.clauses import Literal, rule_clauses
from app.rules.language.model import AccountTest, ChangeTest, PermissionTest, Rule, RuleSet, TenantTest, Window
from app.rules.runtime.compiler import context_key
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.facts import RequestFacts, after_request, change_records, context_record


@dataclass(frozen=True)
class PointOutcome:
    """What one rule set makes of one point: the rule that refuses it (or None), and what it warns/watches."""

    held: frozenset[str]
    denial: Rule | None
    warnings: tuple[str, ...]
    dryruns: tuple[str, ...]


def _text_matches(value: Any, spec: str | bool) -> bool:
    if isinstance(spec, str) and ("*" in spec or "?" in spec):
        return isinstance(value, str) and fnmatchcase(value, spec)
    return type(value) is type(spec) and value == spec


def fact_matches(facts: Mapping[str, Any], key: str, atom: ChangeTest | AccountTest | TenantTest) -> bool:
    """Whether facts[key] matches the test's MATCH (a missing fact never does)."""
    match = atom.match
    if match.kind is not None:
        return facts.get(f"{key}__kind") == match.kind
    if match.same_as is not None:
        return key in facts and match.same_as in facts and facts[key] == facts[match.same_as]
    return key in facts and any(_text_matches(facts[key], v) for v in match.values)


def names_permission(permission: Mapping[str, Any], record: Mapping[str, Any], test: PermissionTest) -> bool:
    """Whether the relation names this permission fact for this change (placeholders bound from the change)."""
    for part, spec in (("head", test.head), ("tail", test.tail)):
        if spec.startswith("{"):
            if record.get(spec[1:-1]) != permission[part]:
                return False
        elif not _text_matches(permission[part], spec):
            return False
    return True


def binds(record: Mapping[str, Any], test: PermissionTest) -> bool:
    """Whether the change has every field the relation's placeholders bind (else the clause cannot hold)."""
    return all(spec[1:-1] in record for spec in (test.head, test.tail) if spec.startswith("{"))


def literal_holds(literal: Literal, facts: RequestFacts, record: Mapping[str, Any]) -> bool:
    """One literal of a compiled clause, as the engine reads it (see app/rules/runtime/compiler.py)."""
    negated, atom = literal
    if isinstance(atom, PermissionTest):
        if not binds(record, atom):
            return False  # the compiler requires the bound field on the change, negated or not
        found = any(p[atom.state] == "open" and names_permission(p, record, atom) for p in facts.permissions)
        return found != negated
    if isinstance(atom, Window):
        now = facts.context["now"]
        inside = (atom.start is None or now >= atom.start.timestamp()) and (
            atom.end is None or now < atom.end.timestamp()
        )
        return inside != negated
    if isinstance(atom, ChangeTest):
        return fact_matches(record, atom.field, atom) != negated
    return fact_matches(facts.context, context_key(atom), atom) != negated


LiveClauses = tuple[tuple[Rule, tuple[tuple[Literal, ...], ...]], ...]  # rules and the clauses left to test


class ClauseEvaluator:
    """Evaluates one rule set's compiled clauses on a request's facts: which rules hold for a change."""

    def __init__(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.clauses = tuple((rule, tuple(tuple(c) for c in rule_clauses(rule))) for rule in rule_set.rules)

    def held(self, facts: RequestFacts, index: int, live: LiveClauses | None = None) -> frozenset[str]:
        """Every rule whose condition holds for changes[index] (of `live`, when the type leaves only those)."""
        record = facts.changes[index]
        return frozenset(
            rule.id
            for rule, alternatives in (self.clauses if live is None else live)
            if any(all(literal_holds(lit, facts, record) for lit in clause) for clause in alternatives)
        )

    def verdict(self, facts: RequestFacts, index: int, live: LiveClauses | None = None) -> PointOutcome:
        """The first denying rule in file order, and the warn/dryrun rules that hold before it (as decide())."""
        held = self.held(facts, index, live)
        warnings: list[str] = []
        dryruns: list[str] = []
        for rule in self.rule_set.rules:
            if rule.id not in held:
                continue
            if rule.enforcement == "warn":
                warnings.append(rule.id)
            elif rule.enforcement == "dryrun":
                dryruns.append(rule.id)
            else:
                return PointOutcome(held, rule, tuple(warnings), tuple(dryruns))
        return PointOutcome(held, None, tuple(warnings), tuple(dryruns))


def request_facts(rule_set: RuleSet, decision_input: DecisionInput) -> RequestFacts:
    """The facts the engine is given for decision_input (DurableRulesEngine.facts_of, without an engine);
    messages are left out: no rule reads them."""
    catalog = rule_set.catalog
    # The patterns of a point are exact catalog values (catalog values have no glob characters).
    enabled = frozenset(p for p in decision_input.tenant_patterns if p in catalog)
    stored = decision_input.stored
    changes = change_records(decision_input.changes, catalog=catalog, enabled=enabled, stored=stored)
    after = after_request(decision_input.changes, catalog=catalog, enabled=enabled, stored=stored)
    permissions = []
    for permission_type in sorted(set(stored) | set(after)):
        was, will = stored.get(permission_type, "close"), after.get(permission_type, "close")
        if permission_type in catalog and "open" in (was, will):
            head, tail = list(catalog.parts(permission_type).values())
            permissions.append(
                {"t": "p", "type": permission_type, "head": head, "tail": tail, "before": was, "after": will}
            )
    context = context_record(
        tenant_id=decision_input.tenant_id,
        account_status=decision_input.account_status,
        attributes=decision_input.attributes,
        now=decision_input.at.timestamp(),
    )
    return RequestFacts(context, permissions, changes, [])
