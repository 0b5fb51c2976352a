"""What the rules see of one request: a typed DecisionInput, built by the service, the cases, impact and explain.

It sits below the engine, the memo and decide() (app/rules/runtime/decision.py), which all read it, so none of
them needs to import another to name it.
"""

from __future__ import annotations

from collections.abc import Mapping
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
