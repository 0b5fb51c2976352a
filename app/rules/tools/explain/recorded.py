"""A recorded decision explained again (`permctl rules explain --trace`): what the row kept, and how the answer
of the current rules differs from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.rules.runtime.answer import Answer, code_name
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.record import DecisionRecord


@dataclass(frozen=True)
class RecordedAnswer:
    """What the service answered when it recorded the decision (the message itself is not kept).

    warned_by / dryrun_by are None for rows recorded before the decisions table kept them."""

    decision_id: int
    trace_id: str
    tenant_id: str
    account_no: str
    created_at: datetime
    rule_set_version: str
    code: int
    failure_index: int
    rule_id: str | None
    warned_by: tuple[str, ...] | None
    dryrun_by: tuple[str, ...] | None

    @property
    def code_name(self) -> str:
        return code_name(self.code)


@dataclass(frozen=True)
class RecordedTrace:
    """A decisions row: the request as the rules saw it and the answer given."""

    decision_input: DecisionInput
    answer: RecordedAnswer


def recorded_trace(row: Any) -> RecordedTrace:
    """A row of the decisions table (app.persistence.models.RecordedDecision), ready to be judged again."""
    record = DecisionRecord.of_row(row)
    decision_input = record.decision_input()
    answer = RecordedAnswer(
        decision_id=record.id or 0,
        trace_id=record.trace_id,
        tenant_id=record.tenant_id,
        account_no=record.account_no,
        created_at=decision_input.at,
        rule_set_version=record.rule_set_version,
        code=record.code,
        failure_index=record.failure_index,
        rule_id=record.rule_id,
        warned_by=record.warned_by,
        dryrun_by=record.dryrun_by,
    )
    return RecordedTrace(decision_input, answer)


def differences(recorded: RecordedAnswer, current: Answer) -> list[str]:
    """How the current rules' answer differs from the recorded one, each naming both (empty: the same)."""
    found = []
    now = (current.code, current.failure_index, current.rule_id)
    if (recorded.code, recorded.failure_index, recorded.rule_id) != now:
        found.append(
            f"outcome: recorded {_outcome(recorded.code, recorded.failure_index, recorded.rule_id)}, "
            f"now {_outcome(*now)}"
        )
    shown = tuple(w["rule_id"] for w in current.data.get("warnings", ()))  # the warnings the caller read
    if recorded.warned_by is not None and recorded.warned_by != shown:
        found.append(f"warnings: recorded {_rule_ids(recorded.warned_by)}, now {_rule_ids(shown)}")
    if recorded.dryrun_by is not None and recorded.dryrun_by != current.dryrun_by:
        found.append(f"dryrun hits: recorded {_rule_ids(recorded.dryrun_by)}, now {_rule_ids(current.dryrun_by)}")
    return found


def _outcome(code: int, failure_index: int, rule_id: str | None) -> str:
    if rule_id is None:
        return f"{code} {code_name(code)}"
    return f"{code} {code_name(code)} at changes[{failure_index}] by {rule_id}"


def _rule_ids(rule_ids: tuple[str, ...]) -> str:
    return ", ".join(f"'{rule_id}'" for rule_id in rule_ids) or "none"
