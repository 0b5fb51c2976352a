"""Replay recorded decisions through a proposed rule set and list the ones whose outcome would change."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.errors import Code
from app.rules.decision import DecisionInput, as_the_rules_see_it, decide
from app.rules.engine import DurableRulesEngine
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
    """A decision as the service recorded it: what the rules saw, and the outcome."""

    id: int
    trace_id: str
    tenant_id: str
    account_no: str
    created_at: datetime
    rule_set_version: str
    decision_input: DecisionInput
    outcome: Decided

    @classmethod
    def of_row(cls, row: Any) -> Recorded:
        """A row of the decisions table (app.persistence.models.RecordedDecision) as impact replays it."""
        decision_input = recorded_input(
            tenant_id=row.tenant_id,
            created_at=row.created_at,
            changes=row.changes,
            tenant_patterns=row.tenant_patterns,
            account_state=row.account_state,
            account_status=row.account_status,
            attributes=row.attributes,
        )
        return cls(
            row.id,
            row.trace_id,
            row.tenant_id,
            row.account_no,
            row.created_at,
            row.rule_set_version,
            decision_input,
            Decided(row.code, row.failure_index, row.rule_id),
        )


def recorded_input(
    *,
    tenant_id: str,
    created_at: datetime,
    changes: str,
    tenant_patterns: str,
    account_state: str,
    account_status: str | None,
    attributes: str | None,
) -> DecisionInput:
    """The DecisionInput a decision row kept. Rows recorded before the account's status and attributes were kept
    (account_status NULL) saw an active account without attributes, and only the stored statuses of the types
    they named: which is all a rule of that time could read."""
    moment = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    return DecisionInput(
        tenant_id=tenant_id,
        tenant_patterns=tuple(json.loads(tenant_patterns)),
        changes=tuple(as_the_rules_see_it(c) if isinstance(c, dict) else c for c in json.loads(changes)),
        stored=json.loads(account_state),
        account_status=account_status or "active",
        attributes=json.loads(attributes) if attributes else {},
        at=moment,
    )


@dataclass(frozen=True)
class Flip:
    """A recorded decision the proposed rules would decide differently."""

    decision: Recorded
    new: Decided


@dataclass
class ImpactReport:
    """Every flip; per rule how many decisions it would newly decide or stop deciding; dryrun hits."""

    replayed: int = 0
    flips: list[Flip] = field(default_factory=list)
    newly_decided_by: Counter[str] = field(default_factory=Counter)
    no_longer_decided_by: Counter[str] = field(default_factory=Counter)
    dryrun_hits: defaultdict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


def replay(engine: DurableRulesEngine, decision: Recorded) -> tuple[Decided, list[str]]:
    """What the proposed rules decide for a recorded request and the state it met, and the dryrun rules that
    would have denied it."""
    outcome = decide(engine, decision.decision_input)
    dryruns = [hit.rule.id for hit in outcome.dryruns]
    if outcome.denial is None:
        return Decided(0, 0, None), dryruns
    hit = outcome.denial
    return Decided(int(Code[hit.rule.outcome]), hit.index, hit.rule.id), dryruns


def impact(proposed: RuleSet, decisions: list[Recorded]) -> ImpactReport:
    """Replay every decision through the proposed rules; collect those whose outcome changes."""
    engine = DurableRulesEngine(proposed)
    report = ImpactReport()
    for decision in decisions:
        report.replayed += 1
        new, dryruns = replay(engine, decision)
        for rule_id in dryruns:
            report.dryrun_hits[rule_id].append(decision.id)
        if new == decision.outcome:
            continue
        report.flips.append(Flip(decision, new))
        if new.rule_id:
            report.newly_decided_by[new.rule_id] += 1
        if decision.outcome.rule_id:
            report.no_longer_decided_by[decision.outcome.rule_id] += 1
    return report
