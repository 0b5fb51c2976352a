"""Replay recorded decisions through a proposed rule set: exact counts of what would change over the whole
history (per rule, tenant and old → new code), and the flipped decisions themselves, at most a chosen few.

Decisions arrive as an iterable (the repository streams the table in batches) and are replayed one at a time;
only the counters and the shown flips are kept. When the old rule set is given, each decision is also replayed
through it: that gives the message the caller got (the decisions table keeps codes, not texts), message changes,
and the decisions the old set already decides otherwise than recorded (recorded under an older set). Those are
not the edit's doing: they are kept apart ("decided otherwise before this edit"), never counted as flips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.errors import Code
from app.rules.language.model import RuleSet
from app.rules.runtime.answer import answer_of
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.runtime.record import DecisionRecord
from app.rules.tools.impact.catalog import CatalogImpact
from app.rules.tools.impact.sample import Shown


@dataclass(frozen=True)
class Decided:
    """An outcome: code, failure_index and the deciding rule (None on success)."""

    code: int
    failure_index: int
    rule_id: str | None

    @property
    def name(self) -> str:
        """The code's name (SUCCESS, NO_STATE_CHANGE, ...), or the number when it is not one of the contract's."""
        return Code(self.code).name if self.code in Code._value2member_map_ else str(self.code)

    def __str__(self) -> str:
        name = self.name
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
    published_version: str | None = None  # the stored version the worker ran (None: recorded before versions)

    @classmethod
    def of(cls, record: DecisionRecord, published_version: str | None = None) -> Recorded:
        """A recorded decision as impact replays it."""
        return cls(
            record.id or 0,
            record.trace_id,
            record.tenant_id,
            record.account_no,
            record.created_at,
            record.rule_set_version,
            record.decision_input(),
            Decided(record.code, record.failure_index, record.rule_id),
            published_version,
        )

    @classmethod
    def of_row(cls, row: Any) -> Recorded:
        """A row of the decisions table (app.persistence.models.RecordedDecision) as impact replays it."""
        return cls.of(DecisionRecord.of_row(row), row.published_version)


@dataclass(frozen=True)
class Replayed:
    """What a rule set decides for a recorded request: the outcome, the caller's message (None on success), and
    the dryrun rules that would have denied it."""

    outcome: Decided
    message: str | None
    dryruns: tuple[str, ...] = ()


def replay(engine: DurableRulesEngine, decision: Recorded) -> Replayed:
    """What the rules of engine decide for a recorded request and the state it met."""
    answer = answer_of(decide(engine, decision.decision_input))
    message = None if answer.accepted else answer.message
    return Replayed(Decided(answer.code, answer.failure_index, answer.rule_id), message, answer.dryrun_by)


@dataclass(frozen=True)
class Flip:
    """A recorded decision the proposed rules would decide differently. old_message is what the old rule set
    says for it, when the old set is given and reproduces the recorded outcome (None otherwise, or on success)."""

    decision: Recorded
    new: Decided
    new_message: str | None = None
    old_message: str | None = None

    @property
    def close_newly_refused(self) -> bool:
        """The new rules refuse a close the old ones let through (they accepted the request, or stopped at a
        later change): refusing a customer's reduction of risk is rarely intended."""
        new, old = self.new, self.decision.outcome
        if new.code == 0 or not (old.code == 0 or old.failure_index > new.failure_index):
            return False
        changes = self.decision.decision_input.changes
        return new.failure_index < len(changes) and changes[new.failure_index].get("permission_status") == "close"


@dataclass(frozen=True)
class MessageChange:
    """A decision whose code stays but whose message changes (the rule or index may change with it)."""

    decision: Recorded
    new: Decided
    old_message: str | None
    new_message: str | None


@dataclass(frozen=True)
class DecidedOtherwise:
    """A recorded decision the old rule set of the comparison already decides otherwise than recorded (it was
    recorded under an older set): not a flip of the edit. The edit may change it further (old != new)."""

    decision: Recorded
    old: Decided
    old_message: str | None
    new: Decided
    new_message: str | None

    @property
    def changed_by_edit(self) -> bool:
        """The proposed rules decide it otherwise than the old ones as well."""
        return self.new != self.old


@dataclass
class TenantCounts:
    """Exact counts for one tenant's recorded decisions."""

    replayed: int = 0
    flipped: int = 0
    newly_refused: int = 0
    newly_accepted: int = 0
    closes_newly_refused: int = 0
    message_changes: int = 0
    decided_otherwise: int = 0


DRYRUN_EXAMPLES = 10  # decision ids kept per dryrun rule, to show


@dataclass(frozen=True)
class Under:
    """A stored version a decision is replayed under: its id (the hash of its files) and its rule set."""

    version: str
    rule_set: RuleSet


@dataclass(frozen=True)
class NotReplayable:
    """A recorded decision that cannot be replayed under the version asked for, and why."""

    decision: Recorded
    why: str


@dataclass
class VersionCounts:
    """Each decision replayed under the stored version it was recorded with: the decisions replayed (and flipped)
    under each version, and those that could not be replayed (their version is not stored)."""

    replayed_under: Counter[str] = field(default_factory=Counter)
    flipped_under: Counter[str] = field(default_factory=Counter)
    rule_set_versions: dict[str, str] = field(default_factory=dict)  # stored version -> its rule-set version
    not_replayable: int = 0
    not_replayable_by_why: Counter[str] = field(default_factory=Counter)
    shown_not_replayable: Shown[NotReplayable] = field(default_factory=lambda: Shown(None))

    @property
    def not_replayable_list(self) -> list[NotReplayable]:
        """The decisions not replayable, chosen to be shown."""
        return self.shown_not_replayable.items


@dataclass
class ImpactReport:
    """Exact counts over every replayed decision, and the flips and message changes chosen to be shown."""

    proposed_version: str = ""
    old_version: str | None = None
    replayed: int = 0
    flipped: int = 0
    newly_refused: int = 0  # accepted before, refused now
    newly_accepted: int = 0
    closes_newly_refused: int = 0
    message_changes: int = 0
    decided_otherwise: int = 0  # decisions the old rule set already decides otherwise than recorded
    decided_otherwise_changed: int = 0  # of those, the ones the proposed rules decide otherwise again
    recorded_versions: Counter[str] = field(default_factory=Counter)
    newly_decided_by: Counter[str] = field(default_factory=Counter)
    no_longer_decided_by: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)  # (old, new) rule id
    by_code: Counter[tuple[int, int]] = field(default_factory=Counter)  # (old, new) code, flipped decisions
    by_tenant: dict[str, TenantCounts] = field(default_factory=dict)
    dryrun_hits: Counter[str] = field(default_factory=Counter)
    dryrun_examples: dict[str, list[int]] = field(default_factory=dict)
    shown_flips: Shown[Flip] = field(default_factory=lambda: Shown(None))
    shown_message_changes: Shown[MessageChange] = field(default_factory=lambda: Shown(None))
    shown_decided_otherwise: Shown[DecidedOtherwise] = field(default_factory=lambda: Shown(None))
    catalog: CatalogImpact | None = None
    versions: VersionCounts | None = None  # replayed under stored versions (impact_under), else None

    @property
    def flips(self) -> list[Flip]:
        """The flips chosen to be shown (every flip unless a limit or sample was asked for)."""
        return self.shown_flips.items

    @property
    def message_change_list(self) -> list[MessageChange]:
        """The message changes chosen to be shown."""
        return self.shown_message_changes.items

    @property
    def decided_otherwise_list(self) -> list[DecidedOtherwise]:
        """The decisions decided otherwise before this edit, chosen to be shown."""
        return self.shown_decided_otherwise.items


def impact(
    proposed: RuleSet,
    decisions: Iterable[Recorded],
    *,
    old: RuleSet | None = None,
    limit: int | None = None,
    seed: int | None = None,
) -> ImpactReport:
    """Replay every decision through the proposed rules (and the old ones, when given); count everything, keep at
    most `limit` flips and message changes (the first ones, or a sample drawn with `seed`)."""
    engine = DurableRulesEngine(proposed)
    # The same version decides the same: replay once (the default old set is often the proposed one).
    old_engine = DurableRulesEngine(old) if old is not None and old.version != proposed.version else None
    report = ImpactReport(
        proposed_version=proposed.version,
        old_version=old.version if old is not None else None,
        shown_flips=Shown(limit, seed=seed),
        shown_message_changes=Shown(limit, seed=seed),
        shown_decided_otherwise=Shown(limit, seed=seed),
    )
    for decision in decisions:
        new = replay(engine, decision)
        before = replay(old_engine, decision) if old_engine is not None else (new if old is not None else None)
        _count(report, decision, new, before)
    return report


def impact_as_recorded(
    decisions: Iterable[Recorded],
    under: Callable[[Recorded], Under | str],
    *,
    limit: int | None = None,
    seed: int | None = None,
) -> ImpactReport:
    """Replay each decision under the stored version it was recorded with, as `under` finds it (or says why it
    cannot): every decision recorded normally replays to its recorded outcome, so a flip means the replay is not
    exact. Counted as impact() counts with no old set; the decisions not replayable are counted apart."""
    engines: dict[str, DurableRulesEngine] = {}  # one per rule-set version: versions that decide alike share it
    counts = VersionCounts(shown_not_replayable=Shown(limit, seed=seed))
    report = ImpactReport(
        shown_flips=Shown(limit, seed=seed),
        shown_message_changes=Shown(limit, seed=seed),
        shown_decided_otherwise=Shown(limit, seed=seed),
        versions=counts,
    )
    for decision in decisions:
        found = under(decision)
        if isinstance(found, str):
            counts.not_replayable += 1
            counts.not_replayable_by_why[found] += 1
            counts.shown_not_replayable.offer(NotReplayable(decision, found))
            continue
        rule_set = found.rule_set
        engine = engines.get(rule_set.version)
        if engine is None:
            engine = engines[rule_set.version] = DurableRulesEngine(rule_set)
        new = replay(engine, decision)
        counts.replayed_under[found.version] += 1
        counts.rule_set_versions[found.version] = rule_set.version
        if new.outcome != decision.outcome:
            counts.flipped_under[found.version] += 1
        _count(report, decision, new, None)
    return report


def _count(report: ImpactReport, decision: Recorded, new: Replayed, before: Replayed | None) -> None:
    recorded = decision.outcome
    tenant = report.by_tenant.setdefault(decision.tenant_id, TenantCounts())
    report.replayed += 1
    tenant.replayed += 1
    report.recorded_versions[decision.rule_set_version] += 1
    for rule_id in new.dryruns:
        report.dryrun_hits[rule_id] += 1
        examples = report.dryrun_examples.setdefault(rule_id, [])
        if len(examples) < DRYRUN_EXAMPLES:
            examples.append(decision.id)
    if before is not None and before.outcome != recorded:
        _decided_otherwise(report, tenant, decision, new, before)
        return
    old_message = before.message if before is not None else None
    if before is not None and recorded.code == new.outcome.code and old_message != new.message:
        report.message_changes += 1
        tenant.message_changes += 1
        report.shown_message_changes.offer(MessageChange(decision, new.outcome, old_message, new.message))
    if new.outcome == recorded:
        return
    flip = Flip(decision, new.outcome, new.message, old_message)
    report.shown_flips.offer(flip)
    report.flipped += 1
    tenant.flipped += 1
    report.by_rule[(recorded.rule_id, new.outcome.rule_id)] += 1
    report.by_code[(recorded.code, new.outcome.code)] += 1
    if new.outcome.rule_id:
        report.newly_decided_by[new.outcome.rule_id] += 1
    if recorded.rule_id:
        report.no_longer_decided_by[recorded.rule_id] += 1
    if recorded.code == 0:
        report.newly_refused += 1
        tenant.newly_refused += 1
    elif new.outcome.code == 0:
        report.newly_accepted += 1
        tenant.newly_accepted += 1
    if flip.close_newly_refused:
        report.closes_newly_refused += 1
        tenant.closes_newly_refused += 1


def _decided_otherwise(
    report: ImpactReport, tenant: TenantCounts, decision: Recorded, new: Replayed, before: Replayed
) -> None:
    """A decision the old rules already decide otherwise than recorded: its own group, never a flip."""
    found = DecidedOtherwise(decision, before.outcome, before.message, new.outcome, new.message)
    report.decided_otherwise += 1
    tenant.decided_otherwise += 1
    if found.changed_by_edit:
        report.decided_otherwise_changed += 1
    report.shown_decided_otherwise.offer(found)
