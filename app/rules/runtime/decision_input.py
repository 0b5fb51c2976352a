"""What the rules see of one request: a typed DecisionInput, built by DecisionInput.of for the service, the cases,
recorded decisions (impact) and explain.

It sits below the engine, the memo and decide() (app/rules/runtime/decision.py), which all read it, so none of
them needs to import another to name it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.rules.language.model import RAW_FIELDS


def as_the_rules_see_it(change: Mapping[str, Any]) -> dict[str, Any]:
    """A change without the fields no rule can read (unknown request fields are never stored)."""
    return {name: change[name] for name in RAW_FIELDS if name in change}


@dataclass(frozen=True)
class DecisionInput:
    """Everything the rules can see for one request; recorded with the decision so impact replays it exactly."""

    tenant_id: str
    tenant_patterns: tuple[str, ...]
    changes: tuple[dict[str, Any], ...]
    stored: Mapping[str, str] = field(default_factory=dict)  # permission_type -> stored status
    account_status: str = "active"
    attributes: Mapping[str, str] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(
        cls,
        *,
        tenant_id: str,
        patterns: Iterable[str],
        changes: Iterable[Any],
        stored: Mapping[str, str] | None = None,
        account_status: str = "active",
        attributes: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> DecisionInput:
        """The one way to build what the rules see: each change as the rules see it (a change that is not an
        object is kept as sent: the rules refuse it), copies of the stored statuses and attributes, and the time
        in UTC (a time without a zone is UTC; None: now)."""
        moment = datetime.now(UTC) if at is None else at if at.tzinfo else at.replace(tzinfo=UTC)
        return cls(
            tenant_id=tenant_id,
            tenant_patterns=tuple(patterns),
            changes=tuple(as_the_rules_see_it(c) if isinstance(c, Mapping) else c for c in changes),
            stored=dict(stored or {}),
            account_status=account_status,
            attributes=dict(attributes or {}),
            at=moment,
        )
