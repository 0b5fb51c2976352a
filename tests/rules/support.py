"""Helpers for the rules tests: changes, rule directories with policies, and decisions through decide()."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.rules.language.loader import load_rule_set
from app.rules.runtime.decision import Decision, decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from tests.support import PROJECT_ROOT, SHIPPED_RULES

BROKER_POLICIES = PROJECT_ROOT / "examples" / "broker-policies"
VALIDATION_IDS = (
    "type-required",
    "type-must-be-text",
    "type-banned-group",
    "type-in-catalog",
    "type-enabled-for-tenant",
    "status-required",
    "status-must-be-text",
    "status-open-or-close",
    "no-duplicate-type",
    "must-change-state",
)
# A fixed moment for decisions that do not test windows (they read the time all the same).
NOON = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ch(permission_type: Any = ..., permission_status: Any = ...) -> dict[str, Any]:
    """A change; `...` leaves the field out."""
    change: dict[str, Any] = {}
    if permission_type is not ...:
        change["permission_type"] = permission_type
    if permission_status is not ...:
        change["permission_status"] = permission_status
    return change


def rules_dir(target: Path, policies: str | None = None, *, attributes: str | None = None) -> Path:
    """target/rules: the shipped catalog and validations, the broker's attributes, and these policies."""
    destination = target / "rules"
    shutil.copytree(SHIPPED_RULES, destination)
    shutil.rmtree(destination / "cases", ignore_errors=True)
    attributes_text = (
        (BROKER_POLICIES / "attributes.yaml").read_text(encoding="utf-8") if attributes is None else attributes
    )
    (destination / "attributes.yaml").write_text(attributes_text, encoding="utf-8")
    if policies is not None:
        (destination / "policies.yaml").write_text(textwrap.dedent(policies), encoding="utf-8")
    return destination


def engine_for(target: Path, policies: str, **kwargs: Any) -> DurableRulesEngine:
    """An engine for the shipped validations plus these policies."""
    return DurableRulesEngine(load_rule_set(rules_dir(target, policies, **kwargs)))


def request(
    changes: Sequence[Mapping[str, Any]],
    *,
    stored: Mapping[str, str] | None = None,
    attributes: Mapping[str, str] | None = None,
    tenant: str = "t1",
    patterns: tuple[str, ...] = ("*",),
    account_status: str = "active",
    at: datetime = NOON,
) -> DecisionInput:
    """A DecisionInput with quiet defaults: the whole catalog enabled, nothing stored, no attributes."""
    return DecisionInput(
        tenant_id=tenant,
        tenant_patterns=patterns,
        changes=tuple(dict(c) for c in changes),
        stored=dict(stored or {}),
        account_status=account_status,
        attributes=dict(attributes or {}),
        at=at,
    )


def decision(engine: DurableRulesEngine, changes: Sequence[Mapping[str, Any]], **kwargs: Any) -> Decision:
    """decide() for these changes (see request() for the keywords)."""
    return decide(engine, request(changes, **kwargs))


def outcome(engine: DurableRulesEngine, changes: Sequence[Mapping[str, Any]], **kwargs: Any) -> tuple[int, str] | None:
    """(failure index, rule id) of the denial, or None when the request goes through."""
    denial = decision(engine, changes, **kwargs).denial
    return None if denial is None else (denial.index, denial.rule.id)


def policies_held(engine: DurableRulesEngine, changes: Sequence[Mapping[str, Any]], **kwargs: Any) -> list[set[str]]:
    """Per change, the policies (not validations) whose condition held."""
    return [set(found) - set(VALIDATION_IDS) for found in decision(engine, changes, **kwargs).held]
