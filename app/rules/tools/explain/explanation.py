"""`permctl rules explain`: every rule's verdict for every change, the facts it read, and the caller's answer.

The verdicts come from decide() with the memo off (the engine judges every change afresh): which rules held
is the engine's word, which rules judged a change is Decision.reached(). The facts shown are the ones the
engine was given (RequestFacts), picked per rule by what its condition tests; nothing here tests a condition.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from app.rules.language.clauses import CountPattern, atoms, count_key, count_patterns, rule_set_clauses
from app.rules.language.model import (
    AccountTest,
    ChangeTest,
    CountTest,
    PermissionTest,
    Rule,
    TenantTest,
    Window,
)
from app.rules.runtime.answer import Answer, answer_of
from app.rules.runtime.decision import Decision, decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.runtime.facts import RequestFacts

NOT_SET = "(not set)"


class Verdict(StrEnum):
    """What became of one rule for one change."""

    DECIDES = "decides"  # held and denies: its outcome is the answer
    WARNS = "warns"  # held, a warn policy: the caller reads it in data.warnings
    DRYRUN = "dryrun"  # held, a dryrun policy: recorded, the caller sees nothing
    DOES_NOT_HOLD = "does_not_hold"
    OUTSIDE_WINDOW = "outside_window"  # judged while its policy is not in force
    NOT_REACHED_RULE = "not_reached_rule"  # an earlier rule decided this change
    NOT_REACHED_CHANGE = "not_reached_change"  # an earlier change decided the request


@dataclass(frozen=True)
class Fact:
    """One fact a rule reads, as the engine was given it."""

    name: str
    value: str


@dataclass(frozen=True)
class RuleVerdict:
    """A rule's verdict for a change; whether its condition held (the engine judges every rule); what it read."""

    rule_id: str
    enforcement: str
    verdict: Verdict
    holds: bool
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class ChangeExplanation:
    """One change: as sent, the facts the rules see, and every rule's verdict in order."""

    index: int
    change: Any
    values: Mapping[str, Any]
    rules: tuple[RuleVerdict, ...]


@dataclass(frozen=True)
class Explanation:
    """A request judged by one rule set: what the rules saw, every verdict, and the answer."""

    rule_set_version: str
    tenant_id: str
    tenant_patterns: tuple[str, ...]
    account_status: str
    attributes: Mapping[str, str]
    at: datetime
    permissions: tuple[Mapping[str, str], ...]  # every permission open before or after: type, before, after
    changes: tuple[ChangeExplanation, ...]
    answer: Answer


def explain(engine: DurableRulesEngine, decision_input: DecisionInput) -> Explanation:
    """Judge the request afresh (no memo) and explain every rule's verdict for every change."""
    decision = decide(engine, decision_input, use_memo=False)
    facts = engine.facts_of(decision_input)
    counts = count_patterns(rule_set_clauses(engine.rule_set.rules))
    changes = tuple(
        ChangeExplanation(
            index,
            decision_input.changes[index],
            {k: v for k, v in facts.changes[index].items() if k not in ("t", "index") and not k.startswith("count_")},
            tuple(_verdicts(decision, decision_input, facts, index, counts)),
        )
        for index in range(len(decision_input.changes))
    )
    return Explanation(
        rule_set_version=decision.rule_set_version,
        tenant_id=decision_input.tenant_id,
        tenant_patterns=decision_input.tenant_patterns,
        account_status=decision_input.account_status,
        attributes=dict(decision_input.attributes),
        at=decision_input.at,
        permissions=tuple({"type": p["type"], "before": p["before"], "after": p["after"]} for p in facts.permissions),
        changes=changes,
        answer=answer_of(decision),
    )


def _verdicts(
    decision: Decision,
    decision_input: DecisionInput,
    facts: RequestFacts,
    index: int,
    counts: tuple[CountPattern, ...],
) -> Iterator[RuleVerdict]:
    held = decision.held[index]
    reached = {rule.id for rule in decision.reached(index)}
    for rule in decision.rules:
        holds = rule.id in held
        read = tuple(_facts_read(rule, decision_input, facts, index, counts))
        verdict = _verdict(rule, holds, rule.id in reached, decision, index, decision_input.at)
        yield RuleVerdict(rule.id, rule.enforcement, verdict, holds, read)


def _verdict(rule: Rule, holds: bool, reached: bool, decision: Decision, index: int, at: datetime) -> Verdict:
    if not reached:
        denial = decision.denial
        assert denial is not None  # every rule judges every change of an accepted request
        return Verdict.NOT_REACHED_CHANGE if index > denial.index else Verdict.NOT_REACHED_RULE
    if holds:
        return {"warn": Verdict.WARNS, "dryrun": Verdict.DRYRUN}.get(rule.enforcement, Verdict.DECIDES)
    if rule.window is not None and not _in_force(rule.window, at):
        return Verdict.OUTSIDE_WINDOW
    return Verdict.DOES_NOT_HOLD


def _in_force(window: Window, at: datetime) -> bool:
    """Whether the time lies in the window (a label for a rule that did not hold; the engine judged it)."""
    return (window.start is None or window.start <= at) and (window.end is None or at < window.end)


_READING_ORDER = {ChangeTest: 0, PermissionTest: 1, CountTest: 1, AccountTest: 2, TenantTest: 3}


def _facts_read(
    rule: Rule, decision_input: DecisionInput, facts: RequestFacts, index: int, counts: tuple[CountPattern, ...]
) -> Iterator[Fact]:
    record = facts.changes[index]
    seen: set[str] = set()
    found: list[Fact] = []
    for atom in sorted(atoms(rule.condition), key=lambda a: _READING_ORDER[type(a)]):
        found.extend(_read(atom, decision_input, facts, record, counts))
    if rule.window is not None:
        start = rule.window.start.isoformat() if rule.window.start else "-"
        end = rule.window.end.isoformat() if rule.window.end else "-"
        found.append(Fact("time", f"{decision_input.at.isoformat()} (in force from {start} until {end})"))
    for fact in found:
        if fact.name not in seen:
            seen.add(fact.name)
            yield fact


def _shown(value: Any) -> str:
    if value is None:
        return NOT_SET
    return value if isinstance(value, str) else json.dumps(value)


def _read(
    atom: ChangeTest | AccountTest | TenantTest | PermissionTest | CountTest,
    decision_input: DecisionInput,
    facts: RequestFacts,
    record: Mapping[str, Any],
    counts: tuple[CountPattern, ...],
) -> list[Fact]:
    if isinstance(atom, ChangeTest):
        name = atom.field
        if atom.match.kind is not None:
            return [Fact(f"change.{name} sent as", record.get(f"{name}__kind", "missing"))]
        shown = [Fact(f"change.{name}", _shown(record.get(name)))]
        if atom.match.same_as is not None:
            shown.append(Fact(f"change.{atom.match.same_as}", _shown(record.get(atom.match.same_as))))
        return shown
    if isinstance(atom, TenantTest):
        return [Fact("tenant", decision_input.tenant_id)]
    if isinstance(atom, AccountTest):
        if atom.field == "status":
            return [Fact("account.status", decision_input.account_status)]
        return [Fact(f"account.{atom.field}", _shown(decision_input.attributes.get(atom.field)))]
    if isinstance(atom, CountTest):
        return [_count(atom, record.get(count_key(counts.index(atom.pattern)), 0))]
    return [_permission(atom, facts, record)]


def _count(test: CountTest, counted: int) -> Fact:
    """The count the change was given for the pattern, against its bound: "4 of options.* open after the request
    (later openings left out), at most 3 allowed"; a change that opens nothing the pattern names is never
    counted."""
    label = "count"
    if not counted:
        return Fact(label, f"this change opens no {test.template}: not counted")
    shown = f"{counted} of {test.template} open after the request (later openings left out)"
    return Fact(label, f"{shown}, at most {test.more_than} allowed")


def _permission(test: PermissionTest, facts: RequestFacts, record: Mapping[str, Any]) -> Fact:
    """The permissions a relation names for this change, with their status before and after the request."""
    specs = []
    for spec in (test.head, test.tail):
        if spec.startswith("{"):
            bound = record.get(spec[1:-1])
            if not isinstance(bound, str):
                return Fact(f"permission {test.template}", f"this change has no {spec[1:-1]}: the test cannot hold")
            specs.append(bound)
        else:
            specs.append(spec)
    named = f"{specs[0]}.{specs[1]}"
    label = f"permission {named}" + ("" if named == test.template else f" ({test.template})")
    matching = [p for p in facts.permissions if fnmatchcase(p["head"], specs[0]) and fnmatchcase(p["tail"], specs[1])]
    if not matching:
        return Fact(label, "close before, close after")
    if len(matching) == 1 and matching[0]["type"] == named:
        return Fact(label, f"{matching[0]['before']} before, {matching[0]['after']} after")
    listed = "; ".join(f"{p['type']} {p['before']} before, {p['after']} after" for p in matching)
    return Fact(label, f"{listed}; every other match close before and after")
