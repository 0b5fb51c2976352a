"""A decision as the service records it (the decisions table): what the rules saw, and the answer given.

The service writes DecisionRecord.row() and impact and explain read rows back with DecisionRecord.of_row(); the
row keeps the request and the state as JSON text in the columns of app.persistence.models.RecordedDecision, which
this module does not import (rules and persistence do not import each other): a row is anything with those
columns as attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.rules.runtime.answer import Answer
from app.rules.runtime.decision_input import DecisionInput


@dataclass(frozen=True)
class DecisionRecord:
    """One decision: the request as the rules saw it, the state it met, the rule set and the answer.

    Rows recorded before the account's status and attributes were kept have account_status and attributes None;
    rows recorded before the warn and dryrun hits were kept have warned_by and dryrun_by None; rows recorded before
    rule sets were stored as versions have published_version None."""

    trace_id: str
    tenant_id: str
    account_no: str
    rule_set_version: str
    changes: tuple[Any, ...]  # as the rules saw them
    tenant_patterns: tuple[str, ...]
    account_state: Mapping[str, str]  # every stored status (older rows: the named types')
    created_at: datetime  # also the time the rules judged at
    code: int
    failure_index: int = 0
    rule_id: str | None = None
    account_status: str | None = None
    attributes: Mapping[str, str] | None = None
    warned_by: tuple[str, ...] | None = None
    dryrun_by: tuple[str, ...] | None = None
    published_version: str | None = None  # the stored version that judged (SPEC §7d); None: recorded before 0008
    id: int | None = None  # given by the database

    @classmethod
    def of(
        cls,
        decision_input: DecisionInput,
        answer: Answer,
        *,
        trace_id: str,
        account_no: str,
        rule_set_version: str,
        published_version: str | None = None,
    ) -> DecisionRecord:
        """The record of a request the rules decided (published_version: the stored version of the engine that
        judged it, when it was built from one)."""
        return cls(
            trace_id=trace_id,
            tenant_id=decision_input.tenant_id,
            account_no=account_no,
            rule_set_version=rule_set_version,
            changes=decision_input.changes,
            tenant_patterns=decision_input.tenant_patterns,
            account_state=dict(decision_input.stored),
            created_at=decision_input.at,
            code=answer.code,
            failure_index=answer.failure_index,
            rule_id=answer.rule_id,
            account_status=decision_input.account_status,
            attributes=dict(decision_input.attributes),
            warned_by=answer.warned_by,
            dryrun_by=answer.dryrun_by,
            published_version=published_version,
        )

    def row(self) -> dict[str, Any]:
        """The columns of the decisions table (without id), the JSON ones as text."""
        return {
            "trace_id": self.trace_id,
            "tenant_id": self.tenant_id,
            "account_no": self.account_no,
            "rule_set_version": self.rule_set_version,
            "changes": json.dumps(list(self.changes)),
            "tenant_patterns": json.dumps(list(self.tenant_patterns)),
            "account_state": json.dumps(dict(self.account_state)),
            "account_status": self.account_status,
            "attributes": None if self.attributes is None else json.dumps(dict(self.attributes)),
            "created_at": self.created_at,
            "warned_by": _ids_text(self.warned_by),
            "dryrun_by": _ids_text(self.dryrun_by),
            "code": self.code,
            "failure_index": self.failure_index,
            "rule_id": self.rule_id,
            "published_version": self.published_version,
        }

    @classmethod
    def of_row(cls, row: Any) -> DecisionRecord:
        """A row of the decisions table (app.persistence.models.RecordedDecision, or the repository's
        StoredDecision): anything with its columns as attributes."""
        return cls(
            id=row.id,
            trace_id=row.trace_id,
            tenant_id=row.tenant_id,
            account_no=row.account_no,
            rule_set_version=row.rule_set_version,
            changes=tuple(json.loads(row.changes)),
            tenant_patterns=tuple(json.loads(row.tenant_patterns)),
            account_state=json.loads(row.account_state),
            created_at=row.created_at,
            code=row.code,
            failure_index=row.failure_index,
            rule_id=row.rule_id,
            account_status=row.account_status,
            attributes=json.loads(row.attributes) if row.attributes else None,
            warned_by=_ids(row.warned_by),
            dryrun_by=_ids(row.dryrun_by),
            published_version=row.published_version,
        )

    def decision_input(self) -> DecisionInput:
        """What the rules saw. A row recorded before the account's status and attributes were kept saw an active
        account without attributes, and only the stored statuses of the types it named: which is all a rule of
        that time could read."""
        return DecisionInput.of(
            tenant_id=self.tenant_id,
            patterns=self.tenant_patterns,
            changes=self.changes,
            stored=self.account_state,
            account_status=self.account_status or "active",
            attributes=self.attributes,
            at=self.created_at,
        )


def _ids_text(ids: tuple[str, ...] | None) -> str | None:
    return None if ids is None else json.dumps(list(ids))


def _ids(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(json.loads(text))
