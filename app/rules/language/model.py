"""The rule set as data: the catalog, the ordered rules and their conditions, and the version that names them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from app.rules.language.attributes import NO_ATTRIBUTES, AttributeSet

# What a condition can test about a change (see rules/README.md), and which of them are text or flags.
RAW_FIELDS = ("permission_type", "permission_status")  # as sent: may be missing or not text
PART_FIELDS = ("product", "market", "group", "name")  # parts of the type: stock.US, account.trade
TEXT_FIELDS = (*RAW_FIELDS, "current_status", *PART_FIELDS)
FLAG_FIELDS = ("in_catalog", "enabled_for_tenant", "named_earlier")
CHANGE_FIELDS = (*TEXT_FIELDS, *FLAG_FIELDS)
KINDS = ("missing", "not_text", "text")  # what a field of the change is: left out, sent as a non-text value, text
MISSING, NOT_TEXT, TEXT = KINDS
STATUSES = ("open", "close")
ACCOUNT_STATUSES = ("active", "deregistered")
ENFORCEMENTS = ("deny", "warn", "dryrun")
# Whether a policy also binds accounts that already hold the permission (SPEC §7c): `holding` (eligibility,
# prerequisites, counts: `permctl rules audit-state` judges stored permissions with it) or only the act of
# opening (`opening`: a freeze). Validations are about the request and have neither.
APPLIES_TO = ("holding", "opening")
# Placeholders a message may use: facts of the change, the tenant, and the account's declared attributes.
MESSAGE_FIELDS = (*RAW_FIELDS, "current_status", *PART_FIELDS, "earlier_index", "tenant")

# A tenant-config pattern as Catalog.expand reads it (fnmatch): catalog characters, * and ?, and closed
# [...] or [!...] sets. fnmatch reads an unclosed '[' as itself, so 'stock.[' would silently enable nothing.
CONFIG_PATTERN = re.compile(r"(?:[A-Za-z0-9_.*?-]|\[!?[A-Za-z0-9_.-]+\])+")
CONFIG_PATTERN_MAX = 64


def is_config_pattern(pattern: object) -> bool:
    """Whether pattern is a glob Catalog.expand understands (e.g. 'stock.*', 'stock.[HU][KS]')."""
    return (
        isinstance(pattern, str)
        and len(pattern) <= CONFIG_PATTERN_MAX
        and CONFIG_PATTERN.fullmatch(pattern) is not None
    )


@dataclass(frozen=True)
class Catalog:
    """The ordered catalog of permission types (a group refused as a whole is a validation rule)."""

    values: tuple[str, ...]
    markets: tuple[str, ...] = ()
    products: tuple[str, ...] = ()  # products that exist once per market (stock.HK, stock.US, ...)
    _members: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_members", frozenset(self.values))

    def __contains__(self, value: object) -> bool:
        return value in self._members

    def __len__(self) -> int:
        return len(self.values)

    def expand(self, patterns: tuple[str, ...]) -> tuple[str, ...]:
        """Catalog values matched by any of the glob patterns, in catalog order."""
        return tuple(v for v in self.values if any(fnmatchcase(v, p) for p in patterns))

    def parts(self, value: str) -> dict[str, str]:
        """The parts of a type: {product, market} for stock.US, {group, name} for account.trade (and for any
        other X.Y); nothing for text without a dot. Values outside the catalog are split the same way."""
        head, dot, tail = value.partition(".")
        if not dot or not head or not tail:
            return {}
        if head in self.products or tail in self.markets:
            return {"product": head, "market": tail}
        return {"group": head, "name": tail}


def value_matches(value: object, spec: str | bool) -> bool:
    """Whether a fact's value is the spec: text or true/false as written, or text a glob matches."""
    if isinstance(spec, str) and ("*" in spec or "?" in spec):
        return isinstance(value, str) and fnmatchcase(value, spec)
    return type(value) is type(spec) and value == spec


@dataclass(frozen=True)
class Match:
    """How one fact is compared: equals one of `values` (each text, a glob, or true/false), has a `kind`
    (missing, not_text, text), or equals another change field (`same_as`)."""

    values: tuple[str | bool, ...] = ()
    kind: str | None = None
    same_as: str | None = None

    def holds_in(self, facts: Mapping[str, Any], key: str) -> bool:
        """Whether facts[key] (a record as app/rules/runtime/facts.py builds it) matches; a missing fact never
        does. The compiler writes the same meaning for the engine; the input space uses this only to see which
        clauses a permission type leaves alive, never to decide a verdict."""
        if self.kind is not None:
            return facts.get(f"{key}__kind") == self.kind
        if self.same_as is not None:
            return key in facts and self.same_as in facts and facts[key] == facts[self.same_as]
        return key in facts and any(value_matches(facts[key], v) for v in self.values)


@dataclass(frozen=True)
class ChangeTest:
    """A fact of the change being judged: `change: {market: [JP, DE]}`."""

    field: str
    match: Match


@dataclass(frozen=True)
class AccountTest:
    """The account's status or one of its declared attributes: `account: {account_type: margin}`."""

    field: str  # "status" or an attribute name
    match: Match


@dataclass(frozen=True)
class TenantTest:
    """The caller's tenant: `tenant: [sg_mexc]`."""

    match: Match


@dataclass(frozen=True)
class PermissionTest:
    """Another permission of the account, before or after the request: `permission: stock.{market}`.

    `head` and `tail` are the two parts of the permission type (stock / US, account / trade); each is a
    literal, a glob, or a placeholder bound from the change being judged (`{market}`)."""

    template: str
    head: str
    tail: str
    state: str  # "before" | "after"
    status: str  # "open" | "close"
    at: tuple[int, int] = field(default=(1, 1), compare=False)  # line and column in its file, for lint

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The change fields the relation binds ({market} -> market)."""
        return tuple(spec[1:-1] for spec in (self.head, self.tail) if spec.startswith("{"))

    def binds(self, change: Mapping[str, Any]) -> bool:
        """Whether the change has every field the placeholders bind (else the relation names nothing)."""
        return all(name in change for name in self.placeholders)

    def names(self, head: str, tail: str, change: Mapping[str, Any]) -> bool:
        """Whether the relation names the permission head.tail for this change (placeholders bound from it)."""
        return pattern_names(self.head, self.tail, head, tail, change)


@dataclass(frozen=True)
class CountTest:
    """How many permissions matching a pattern are open after the request: `count: {permission: options.*,
    after: open, more_than: 3}`.

    It holds for change i when change i itself opens a permission the pattern names and more than `more_than`
    permissions the pattern names are open after the request (SPEC §7a's "after": the stored statuses
    overridden by each change whose type is named for the first time, is in the catalog, is enabled for the
    tenant and whose status is open or close), leaving out those a later change (j > i) opens from closed. So
    the change that would exceed the bound is the one refused, a close counts wherever it stands in the
    request, and a close (or a change that opens nothing the pattern names) never makes it hold. `head` and
    `tail` are as a PermissionTest's: a literal, a glob, or a placeholder bound from the change (an unbound
    placeholder names nothing: no hold)."""

    template: str
    head: str
    tail: str
    more_than: int
    at: tuple[int, int] = field(default=(1, 1), compare=False)  # line and column in its file, for lint

    @property
    def pattern(self) -> tuple[str, str]:
        """What is counted: the (head, tail) of the permissions, placeholders as written."""
        return self.head, self.tail

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The change fields the pattern binds ({market} -> market)."""
        return tuple(spec[1:-1] for spec in (self.head, self.tail) if spec.startswith("{"))

    def names(self, head: str, tail: str, change: Mapping[str, Any]) -> bool:
        """Whether the pattern names the permission head.tail for this change (placeholders bound from it)."""
        return pattern_names(self.head, self.tail, head, tail, change)


def pattern_names(head_spec: str, tail_spec: str, head: str, tail: str, change: Mapping[str, Any]) -> bool:
    """Whether a pattern HEAD.TAIL (each a literal, a glob or a placeholder bound from the change) names the
    permission head.tail."""
    for part, spec in ((head, head_spec), (tail, tail_spec)):
        if spec.startswith("{"):
            if change.get(spec[1:-1]) != part:
                return False
        elif not value_matches(part, spec):
            return False
    return True


@dataclass(frozen=True)
class All:
    """Every part holds."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one part holds."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """The part does not hold."""

    part: Condition


Condition = All | AnyOf | Not | ChangeTest | AccountTest | TenantTest | PermissionTest | CountTest


@dataclass(frozen=True)
class Window:
    """When a policy is in force (UTC): from inclusive, until exclusive; either may be open."""

    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class Rule:
    """A validation or a policy: when its condition holds for a change it denies it (or warns, or is only
    watched), reporting its outcome and message."""

    id: str
    description: str
    field: str  # where the message points: permission_type or permission_status
    condition: Condition
    outcome: str  # a Code name
    message: str
    enforcement: str = "deny"
    window: Window | None = None
    source: str = "validation.yaml"
    line: int = 1
    # (key, line, column) of each key of the rule, for lint
    places: tuple[tuple[str, int, int], ...] = dataclasses.field(default=(), compare=False)

    def place(self, key: str) -> tuple[int, int]:
        """Where a key of the rule (message, until, when, ...) is written, else where the rule starts."""
        return next(((line, col) for name, line, col in self.places if name == key), (self.line, 1))

    column: int = 1
    applies_to: str = "holding"  # APPLIES_TO: whether the state audit judges held permissions with it

    @property
    def is_policy(self) -> bool:
        return self.outcome == "PERMISSION_POLICY_DENIED"


@dataclass(frozen=True)
class RuleSet:
    """A loaded, validated rules/ directory: validations first, then policies, each in file order."""

    version: str
    catalog: Catalog
    rules: tuple[Rule, ...]
    attributes: AttributeSet = NO_ATTRIBUTES  # declared in attributes.yaml (app/rules/language/attributes.py)

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id."""
        return next(r for r in self.rules if r.id == rule_id)
