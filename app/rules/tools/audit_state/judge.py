"""One account state judged against the holding policies: each open permission as if it were opened now, in a
request of its own, with everything else the account holds open.

Every verdict comes from decide(), the service's own decision function, on an engine compiled from the rule
set's holding policies (`applies_to: holding`) only: validations are not re-run, a freeze (`applies_to:
opening`) binds no one who already holds the permission. What a validation would refuse is reported apart: an
open permission outside the catalog, or one the tenant's config no longer enables, is listed as such and not
judged by the policies (a real request for it would stop at INVALID_PERMISSION_TYPE before any policy).

Many accounts share a state (the same open permissions, attributes and tenant): a state is judged once and its
verdict remembered for the rest of the audit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from app.rules.language.model import RuleSet
from app.rules.runtime.decision import Hit, decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine

HOLDING = "holding"
HOLDING_VERSION_SUFFIX = "_holding"  # the holding set compiles apart from the whole set of the same version


@dataclass(frozen=True)
class Holding:
    """One active account as the audit judges it: its tenant, its number, its open permissions and attributes."""

    tenant_id: str
    account_no: str
    open_permissions: tuple[str, ...]
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class Flag:
    """A rule that holds for one open permission: a deny (a violation), or a warn or dryrun hit."""

    permission_type: str
    rule_id: str
    enforcement: str
    message: str


@dataclass(frozen=True)
class StateVerdict:
    """What the holding policies make of one state: per open permission the deny that decides it and the warn
    and dryrun hits before it; the open permissions outside the catalog and those the tenant no longer enables."""

    violations: tuple[Flag, ...] = ()
    hits: tuple[Flag, ...] = ()
    outside_catalog: tuple[str, ...] = ()
    not_enabled: tuple[str, ...] = ()


StateKey = tuple[str, tuple[str, ...], frozenset[tuple[str, str]]]


def holding_rules(rule_set: RuleSet) -> RuleSet:
    """The rule set's policies that bind accounts holding a permission, under a version of their own."""
    return dataclasses.replace(
        rule_set,
        version=f"{rule_set.version}{HOLDING_VERSION_SUFFIX}",
        rules=tuple(r for r in rule_set.rules if r.is_policy and r.applies_to == HOLDING),
    )


def _flag(permission_type: str, hit: Hit) -> Flag:
    """The hit with the rule's message as written for it: the caller's `changes[0].permission_type 'stock.US': `
    names the request, which the audit only imagines (a catalog value holds no ': ')."""
    _, _, detail = hit.message.partition(": ")
    return Flag(permission_type, hit.rule.id, hit.rule.enforcement, detail)


class StateJudge:
    """Judges account states at one moment against one rule set's holding policies; release() when done."""

    def __init__(self, rule_set: RuleSet, *, at: datetime, patterns: Mapping[str, tuple[str, ...]]) -> None:
        self.rule_set = rule_set
        self._at = at
        self._patterns = dict(patterns)
        self._enabled: dict[str, frozenset[str]] = {}
        self._engine = DurableRulesEngine(holding_rules(rule_set))
        self._memo: dict[StateKey, StateVerdict] = {}

    @property
    def states_judged(self) -> int:
        """How many distinct states were judged (each once)."""
        return len(self._memo)

    def release(self) -> None:
        """Give up the engine (its compiled ruleset may then be dropped)."""
        self._engine.release()

    def judge(self, holding: Holding) -> StateVerdict:
        """The verdict of the account's state, judged once per distinct state."""
        key = (holding.tenant_id, holding.open_permissions, frozenset(holding.attributes.items()))
        verdict = self._memo.get(key)
        if verdict is None:
            verdict = self._memo[key] = self._judged(holding)
        return verdict

    def _enabled_for(self, tenant_id: str) -> frozenset[str]:
        found = self._enabled.get(tenant_id)
        if found is None:
            patterns = self._patterns.get(tenant_id, ())
            found = self._enabled[tenant_id] = frozenset(self.rule_set.catalog.expand(patterns))
        return found

    def _judged(self, holding: Holding) -> StateVerdict:
        catalog = self.rule_set.catalog
        enabled = self._enabled_for(holding.tenant_id)
        outside = tuple(p for p in holding.open_permissions if p not in catalog)
        not_enabled = tuple(p for p in holding.open_permissions if p in catalog and p not in enabled)
        violations: list[Flag] = []
        hits: list[Flag] = []
        for permission_type in holding.open_permissions:
            if permission_type not in enabled:
                continue
            decision = decide(self._engine, self._opening(holding, permission_type))
            hits.extend(_flag(permission_type, hit) for hit in (*decision.warnings, *decision.dryruns))
            if decision.denial is not None:
                violations.append(_flag(permission_type, decision.denial))
        return StateVerdict(tuple(violations), tuple(hits), outside, not_enabled)

    def _opening(self, holding: Holding, permission_type: str) -> DecisionInput:
        """The request that opens permission_type now, on the account as it stands with that one closed."""
        stored = dict.fromkeys(holding.open_permissions, "open")
        stored[permission_type] = "close"
        return DecisionInput.of(
            tenant_id=holding.tenant_id,
            patterns=self._patterns.get(holding.tenant_id, ()),
            changes=({"permission_type": permission_type, "permission_status": "open"},),
            stored=stored,
            account_status="active",
            attributes=holding.attributes,
            at=self._at,
        )
