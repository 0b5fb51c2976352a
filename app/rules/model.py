"""The rule set as data: catalog, ordered validation rules, and the version that names them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from app.rules.attributes import NO_ATTRIBUTES, AttributeSet

# Facts the adapter puts on every change event, and which tests each accepts (see rules/README.md).
TEXT_FACTS = frozenset({"permission_type", "permission_status", "current_status"})
RAW_FIELDS = frozenset({"permission_type", "permission_status"})
FLAG_FACTS = frozenset({"in_catalog", "enabled_for_tenant", "named_earlier"})
KNOWN_FACTS = TEXT_FACTS | FLAG_FACTS
MESSAGE_PLACEHOLDERS = frozenset({"permission_type", "permission_status", "current_status", "earlier_index"})

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
    """The ordered catalog of permission types and the groups refused as a whole."""

    values: tuple[str, ...]
    markets: tuple[str, ...] = ()
    banned_groups: tuple[str, ...] = ()
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


@dataclass(frozen=True)
class Condition:
    """One test of one fact: {fact: X, <test>: argument}."""

    fact: str
    test: str  # is | matches | equals | not_one_of | equals_fact
    argument: Any


@dataclass(frozen=True)
class Rule:
    """One validation rule: fires when its condition holds and reports its outcome."""

    id: str
    description: str
    field: str
    condition: Condition
    outcome: str
    message: str


@dataclass(frozen=True)
class RuleSet:
    """A loaded, validated rules/ directory."""

    version: str
    catalog: Catalog
    rules: tuple[Rule, ...]
    attributes: AttributeSet = NO_ATTRIBUTES  # declared in attributes.yaml (app/rules/attributes.py)

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id."""
        return next(r for r in self.rules if r.id == rule_id)
