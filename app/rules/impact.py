"""Replay recorded decisions through a proposed rule set and list the ones whose outcome would change."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from app.errors import Code
from app.rules.engine import DurableRulesEngine
from app.rules.messages import rejection
from app.rules.model import RuleSet


@dataclass(frozen=True)
class Decided:
    """An outcome: code, failure_index and the deciding rule (None on success)."""

    code: int
    failure_index: int
    rule_id: str | None

    def __str__(self) -> str:
        name = Code(self.code).name if self.code in Code._value2member_map_ else str(self.code)
        if self.rule_id is None:
            return f"{self.code} {name}"
        return f"{self.code} {name} at changes[{self.failure_index}] by {self.rule_id}"


@dataclass(frozen=True)
class Recorded:
    """A decision as the service recorded it."""

    id: int
    trace_id: str
    tenant_id: str
    account_no: str
    created_at: datetime
    rule_set_version: str
    changes: str
    tenant_patterns: str
    account_state: str
    outcome: Decided


@dataclass(frozen=True)
class Flip:
    """A recorded decision the proposed rules would decide differently."""

    decision: Recorded
    new: Decided


@dataclass
class ImpactReport:
    """Every flip, and per rule how many decisions it would newly decide or stop deciding."""

    replayed: int = 0
    flips: list[Flip] = field(default_factory=list)
    newly_decided_by: Counter[str] = field(default_factory=Counter)
    no_longer_decided_by: Counter[str] = field(default_factory=Counter)


def replay(engine: DurableRulesEngine, decision: Recorded) -> Decided:
    """What the engine's rule set decides for a recorded request and the state it met."""
    changes = json.loads(decision.changes)
    catalog = engine.rule_set.catalog
    enabled = frozenset(catalog.expand(tuple(json.loads(decision.tenant_patterns))))
    verdicts = engine.evaluate(changes, enabled=enabled, current=json.loads(decision.account_state))
    failed = next((v for v in verdicts if not v.passed), None)
    if failed is None:
        return Decided(0, 0, None)
    error = rejection(failed, changes[failed.index])
    return Decided(int(error.code), error.failure_index, error.rule_id)


def impact(proposed: RuleSet, decisions: list[Recorded]) -> ImpactReport:
    """Replay every decision through the proposed rules; collect those whose outcome changes."""
    engine = DurableRulesEngine(proposed)
    report = ImpactReport()
    for decision in decisions:
        report.replayed += 1
        new = replay(engine, decision)
        if new == decision.outcome:
            continue
        report.flips.append(Flip(decision, new))
        if new.rule_id:
            report.newly_decided_by[new.rule_id] += 1
        if decision.outcome.rule_id:
            report.no_longer_decided_by[decision.outcome.rule_id] += 1
    return report
