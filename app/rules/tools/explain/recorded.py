"""A recorded decision explained again (`permctl rules explain --trace`): what the row kept, and how the answer
of the current rules differs from it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.rules.runtime.decision_input import DecisionInput
from app.rules.tools.explain.explanation import Answer, code_name
from app.rules.tools.impact.replay import Recorded


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


def _ids(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))


def recorded_trace(row: Any) -> RecordedTrace:
    """A row of the decisions table (app.persistence.models.RecordedDecision), ready to be judged again."""
    recorded = Recorded.of_row(row)
    outcome = recorded.outcome
    answer = RecordedAnswer(
        decision_id=recorded.id,
        trace_id=recorded.trace_id,
        tenant_id=recorded.tenant_id,
        account_no=recorded.account_no,
        created_at=recorded.decision_input.at,
        rule_set_version=recorded.rule_set_version,
        code=outcome.code,
        failure_index=outcome.failure_index,
        rule_id=outcome.rule_id,
        warned_by=_ids(row.warned_by),
        dryrun_by=_ids(row.dryrun_by),
    )
    return RecordedTrace(recorded.decision_input, answer)


def differences(recorded: RecordedAnswer, current: Answer) -> list[str]:
    """How the current rules' answer differs from the recorded one, each naming both (empty: the same)."""
    found = []
    current_index = int(current.data.get("failure_index", 0))
    if (recorded.code, recorded.failure_index, recorded.rule_id) != (current.code, current_index, current.rule_id):
        found.append(
            f"outcome: recorded {_outcome(recorded.code, recorded.failure_index, recorded.rule_id)}, "
            f"now {_outcome(current.code, current_index, current.rule_id)}"
        )
    if recorded.warned_by is not None and recorded.warned_by != current.warned_by:
        found.append(f"warnings: recorded {list(recorded.warned_by)}, now {list(current.warned_by)}")
    if recorded.dryrun_by is not None and recorded.dryrun_by != current.dryrun_by:
        found.append(f"dryrun hits: recorded {list(recorded.dryrun_by)}, now {list(current.dryrun_by)}")
    return found


def _outcome(code: int, failure_index: int, rule_id: str | None) -> str:
    if rule_id is None:
        return f"{code} {code_name(code)}"
    return f"{code} {code_name(code)} at changes[{failure_index}] by {rule_id}"
