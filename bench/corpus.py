"""A seeded corpus of DecisionInputs for a rule set: what rule evaluation is checked and timed on.

Requests of 1, 10 and 100 changes, mostly well formed (as real traffic is) with every kind of bad change mixed
in, under a few tenants and tenant configs. For a rule set with policies the corpus leans towards what they
name: half the well-formed changes pick a value a policy mentions, a quarter of those bring the same product's
partner on the same market (options.US with stock.US, in either order and either status), stored states do the
same, accounts carry random subsets of the declared attributes, and the time is drawn around every window's
edges (a second before, at, and after each `from` and `until`) and a few moments far from them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from app.rules.language.model import All, AnyOf, ChangeTest, Condition, Not, PermissionTest, RuleSet
from app.rules.runtime.decision_input import DecisionInput

SIZES = (1, 10, 100)
TENANTS = ("bench_a", "bench_b", "sg_mexc")
TENANT_CONFIGS = (("*",), ("*",), ("*",), ("account.*", "stock.*", "options.US", "trade.*"), ("stock.*",))
FAR_MOMENTS = (
    datetime(2024, 6, 1, tzinfo=UTC),
    datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
    datetime(2031, 3, 1, tzinfo=UTC),
)
OTHER_ATTRIBUTE_VALUES = ("SG", "CN", "HK", "US", "JP")  # for attributes declared by pattern, not by values


def _named(condition: Condition) -> set[str]:
    """Products, groups and types a condition names as literals (stock, options, account.withdraw, ...)."""
    if isinstance(condition, All | AnyOf):
        return set().union(*(_named(p) for p in condition.parts))
    if isinstance(condition, Not):
        return _named(condition.part)
    if isinstance(condition, PermissionTest):
        return {condition.head} if not condition.head.startswith("{") else set()
    if isinstance(condition, ChangeTest) and condition.field in ("permission_type", "product", "group"):
        return {str(v) for v in condition.match.values if isinstance(v, str) and "*" not in v and "?" not in v}
    return set()


def policy_values(rule_set: RuleSet) -> list[str]:
    """Catalog values whose type, product or group some policy names (empty for a set without policies)."""
    named: set[str] = set()
    for rule in rule_set.rules:
        if rule.is_policy:
            named |= _named(rule.condition)
    catalog = rule_set.catalog
    return [v for v in catalog.values if v in named or set(catalog.parts(v).values()) & named]


def moments(rule_set: RuleSet) -> list[datetime]:
    """Times around every window's edges, and a few far from them."""
    found = set(FAR_MOMENTS)
    second = timedelta(seconds=1)
    for rule in rule_set.rules:
        if rule.window is not None:
            for edge in (rule.window.start, rule.window.end):
                if edge is not None:
                    found.update((edge - second, edge, edge + second))
    return sorted(found)


def _odd_change(rng: random.Random, values: Sequence[str], earlier: list[dict[str, Any]]) -> dict[str, Any]:
    status = rng.choice(["open", "close"])
    kinds: list[dict[str, Any]] = [
        {"permission_status": status},
        {"permission_type": 123, "permission_status": status},
        {"permission_type": None, "permission_status": status},
        {"permission_type": "flag.options", "permission_status": status},
        {"permission_type": "Stock.US", "permission_status": status},
        {"permission_type": "stock.us\x00", "permission_status": status},
        {"permission_type": "stock.\ud800", "permission_status": status},
        {"permission_type": rng.choice(values)},
        {"permission_type": rng.choice(values), "permission_status": True},
        {"permission_type": rng.choice(values), "permission_status": "OPEN"},
    ]
    if earlier:
        kinds.append(dict(rng.choice(earlier)))
    return rng.choice(kinds)


class Picker:
    """Draws catalog values, leaning towards the policies' values and their same-market partners."""

    def __init__(self, rule_set: RuleSet, rng: random.Random) -> None:
        self.rng = rng
        self.catalog = rule_set.catalog
        self.values = list(rule_set.catalog.values)
        self.named = policy_values(rule_set)
        self.named_products = sorted({self.catalog.parts(v).get("product", "") for v in self.named} - {""})

    def one(self) -> str:
        pool = self.named if self.named and self.rng.random() < 0.5 else self.values
        return self.rng.choice(pool)

    def some(self) -> list[str]:
        """One value, or (a quarter of the time) it and a partner product on the same market, shuffled."""
        value = self.one()
        market = self.catalog.parts(value).get("market")
        if market is None or len(self.named_products) < 2 or self.rng.random() >= 0.25:
            return [value]
        partner = f"{self.rng.choice(self.named_products)}.{market}"
        pair = [value, partner] if partner in self.catalog and partner != value else [value]
        self.rng.shuffle(pair)
        return pair


def _attributes(rule_set: RuleSet, rng: random.Random) -> dict[str, str]:
    out = {}
    for attribute in rule_set.attributes:
        if rng.random() < 0.8:
            out[attribute.name] = rng.choice(attribute.values or OTHER_ATTRIBUTE_VALUES)
    return out


def request(rule_set: RuleSet, size: int, rng: random.Random, picker: Picker, times: list[datetime]) -> DecisionInput:
    """One seeded request of `size` changes with its account, tenant and time."""
    changes: list[dict[str, Any]] = []
    while len(changes) < size:
        if rng.random() < 0.85:
            for value in picker.some()[: size - len(changes)]:
                changes.append({"permission_type": value, "permission_status": rng.choice(["open", "close"])})
        else:
            changes.append(_odd_change(rng, picker.values, changes))
    stored: dict[str, str] = {}
    for _ in range(rng.randint(0, 12)):
        for value in picker.some():
            stored[value] = rng.choice(["open", "open", "close"])
    return DecisionInput(
        tenant_id=rng.choice(TENANTS),
        tenant_patterns=rng.choice(TENANT_CONFIGS),
        changes=tuple(changes),
        stored=stored,
        account_status="active" if rng.random() < 0.97 else "deregistered",
        attributes=_attributes(rule_set, rng),
        at=rng.choice(times),
    )


def corpus(rule_set: RuleSet, *, per_size: Mapping[int, int], seed: int = 5) -> dict[int, list[DecisionInput]]:
    """`per_size[k]` requests of k changes each, the same for the same seed."""
    rng = random.Random(seed)
    picker = Picker(rule_set, rng)
    times = moments(rule_set)
    return {
        size: [request(rule_set, size, rng, picker, times) for _ in range(count)] for size, count in per_size.items()
    }
