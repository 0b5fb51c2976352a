"""The state audit's findings over every account, and the one document every format shows (SPEC §7c):

    {"judged_at", "rule_set_version", "accounts_checked", "accounts_skipped",
     "violations": [{"tenant", "account_no", "permission_type", "rule_id", "enforcement", "message"}],
     "hits": [...], "outside_catalog": [{"tenant", "account_no", "permission_type"}], "not_enabled": [...],
     "by_rule": {rule_id: n}, "by_tenant": {tenant: n}}

Lists are sorted by tenant, account, permission and rule; by_rule and by_tenant count the deny violations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from app.rules.language.clauses import rule_clauses
from app.rules.language.model import Catalog, CountTest, Rule, RuleSet
from app.rules.tools.audit_state.judge import Flag, Holding, StateVerdict

FINDING_FIELDS = ("tenant", "account_no", "permission_type", "rule_id", "enforcement", "message")
PLACED_FIELDS = ("tenant", "account_no", "permission_type")


@dataclass(frozen=True, order=True)
class Finding:
    """A rule that holds for one open permission of one account."""

    tenant: str
    account_no: str
    permission_type: str
    rule_id: str
    enforcement: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in FINDING_FIELDS}


@dataclass(frozen=True, order=True)
class Placed:
    """An open permission of one account that a validation would refuse to open now."""

    tenant: str
    account_no: str
    permission_type: str

    def as_json(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in PLACED_FIELDS}


def count_bound(rule: Rule) -> CountTest | None:
    """The count a rule bounds (SPEC §7b), when it bounds exactly one, not negated; None for any other rule.

    A negated count ("at most N open" as a condition) never refuses an account for holding too many, so it is
    not a breach to collapse."""
    found = {
        test.atom
        for clause in rule_clauses(rule)
        for test in clause.tests
        if isinstance(test.atom, CountTest) and not test.negated
    }
    return found.pop() if len(found) == 1 else None


def _counted(count: CountTest, permission_type: str, catalog: Catalog) -> str:
    """The permissions the count names for this permission, placeholders bound: `options.*`, `*.HK`."""
    parts = catalog.parts(permission_type)
    head, tail = (parts.get(spec[1:-1], spec) if spec.startswith("{") else spec for spec in count.pattern)
    return f"{head}.{tail}"


def collapse_count_breaches(rule_set: RuleSet, flags: Sequence[Flag]) -> list[Flag]:
    """THE ONE PLACE a count rule's findings for one account are collapsed: a count breach is reported once per
    account (and per permissions counted: `*.{market}` counts each market apart), saying how many to close.

    Judged one at a time, each open permission a count rule names is opened with all the others open, so when
    more than the bound are open every one of them is refused by the rule: n refusals mean n open, of which
    n - bound must be closed. Other rules' findings pass through unchanged, in order."""
    kept: list[Flag] = []
    groups: dict[tuple[str, str], list[Flag]] = {}
    for flag in flags:
        count = count_bound(rule_set.rule(flag.rule_id))
        if count is None:
            kept.append(flag)
        else:
            groups.setdefault((flag.rule_id, _counted(count, flag.permission_type, rule_set.catalog)), []).append(flag)
    for (rule_id, counted), group in groups.items():
        bound = cast(CountTest, count_bound(rule_set.rule(rule_id))).more_than
        held = ", ".join(sorted(f.permission_type for f in group))
        close = len(group) - bound
        message = (
            f"{len(group)} of {counted} open where at most {bound} may be: close {close} of them ({group[0].message})"
        )
        kept.append(Flag(held, rule_id, group[0].enforcement, message))
    return kept


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StateAudit:
    """What the audit found, account by account."""

    rule_set: RuleSet
    judged_at: datetime
    accounts_checked: int = 0
    accounts_skipped: int = 0
    violations: list[Finding] = field(default_factory=list)
    hits: list[Finding] = field(default_factory=list)
    outside_catalog: list[Placed] = field(default_factory=list)
    not_enabled: list[Placed] = field(default_factory=list)

    @property
    def denied(self) -> bool:
        """Whether some account holds a permission a deny policy would refuse to open now."""
        return bool(self.violations)

    def add(self, holding: Holding, verdict: StateVerdict) -> None:
        """One account's verdict."""
        tenant, account = holding.tenant_id, holding.account_no
        self.accounts_checked += 1
        for flag in collapse_count_breaches(self.rule_set, verdict.violations):
            self.violations.append(Finding(tenant, account, *_fields(flag)))
        self.hits.extend(
            Finding(tenant, account, *_fields(flag)) for flag in collapse_count_breaches(self.rule_set, verdict.hits)
        )
        self.outside_catalog.extend(Placed(tenant, account, p) for p in verdict.outside_catalog)
        self.not_enabled.extend(Placed(tenant, account, p) for p in verdict.not_enabled)

    def document(self) -> dict[str, Any]:
        """The report as JSON data, in a deterministic order."""
        violations = sorted(self.violations)
        return {
            "judged_at": _stamp(self.judged_at),
            "rule_set_version": self.rule_set.version,
            "accounts_checked": self.accounts_checked,
            "accounts_skipped": self.accounts_skipped,
            "violations": [f.as_json() for f in violations],
            "hits": [f.as_json() for f in sorted(self.hits)],
            "outside_catalog": [p.as_json() for p in sorted(self.outside_catalog)],
            "not_enabled": [p.as_json() for p in sorted(self.not_enabled)],
            "by_rule": dict(sorted(Counter(f.rule_id for f in violations).items())),
            "by_tenant": dict(sorted(Counter(f.tenant for f in violations).items())),
        }


def _fields(flag: Flag) -> tuple[str, str, str, str]:
    return flag.permission_type, flag.rule_id, flag.enforcement, flag.message
