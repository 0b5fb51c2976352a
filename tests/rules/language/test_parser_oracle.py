"""Random conditions of the policy language, judged by the engine and by a plain-Python reading of the
language (tests only): every all/any/not nesting, every kind of test, on random requests.

The reading is three-valued (Kleene): a relation whose placeholder the change cannot bind (stock.{market}
for account.trade) is unknown, and a policy holds only when its condition is certainly true. This is what
the compiler's disjunctive form gives: a clause naming such a relation needs the change to have the part.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

import pytest

from app.rules.language.clauses import ConditionTooLarge, clauses
from app.rules.language.loader import load_rule_set
from app.rules.language.model import Catalog
from app.rules.language.parser import is_glob
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from tests.rules.support import ch, request, rules_dir

POLICIES = 40
REQUESTS = 500

ATOMS: list[dict[str, Any]] = [
    {"change": {"permission_type": "stock.*"}},
    {"change": {"permission_type": ["stock.US", "options.HK", "x.y"]}},
    {"change": {"market": "US"}},
    {"change": {"market": ["JP", "HK"]}},
    {"change": {"product": "o*"}},
    {"change": {"group": "account"}},
    {"change": {"name": ["trade", "OSL"]}},
    {"change": {"permission_status": "open"}},
    {"change": {"permission_status": {"is": "text"}}},
    {"change": {"permission_type": {"is": "missing"}}},
    {"change": {"permission_type": {"is": "not_text"}}},
    {"change": {"permission_status": {"same_as": "current_status"}}},
    {"change": {"market": {"same_as": "name"}}},
    {"change": {"in_catalog": True}},
    {"change": {"enabled_for_tenant": False}},
    {"change": {"named_earlier": True}},
    {"change": {"current_status": "open"}},
    {"account": {"account_type": "margin"}},
    {"account": {"residency": "C*"}},
    {"account": {"status": "active"}},
    {"account": {"investor_class": ["professional"]}},
    {"tenant": "t1"},
    {"tenant": ["t2", "s*"]},
    {"permission": "stock.{market}", "after": "open"},
    {"permission": "stock.{market}", "before": "open"},
    {"permission": "options.{market}", "after": "close"},
    {"permission": "{product}.US", "before": "open"},
    {"permission": "stock.*", "after": "open"},
    {"permission": "account.trade", "before": "open", "after": "close"},
    {"permission": "{group}.trade", "after": "open"},
    {"permission": "*.{market}", "before": "close"},
]

TYPES: tuple[Any, ...] = (
    "stock.US",
    "stock.HK",
    "stock.JP",
    "options.US",
    "options.HK",
    "options.JP",
    "ipo.US",
    "account.trade",
    "account.withdraw",
    "va.OSL",
    "trade.fix",
    "stock.XX",
    "x.y",
    "flag.options",
    "nodot",
    "",
    42,
    None,
    ...,
)
STATUSES: tuple[Any, ...] = ("open", "close", "open", "close", "OPEN", "", 1, ...)
RELATED = ("stock.US", "stock.HK", "stock.JP", "options.US", "options.HK", "ipo.US", "account.trade", "va.OSL")


def random_condition(rng: random.Random, depth: int) -> dict[str, Any]:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(ATOMS)
    kind = rng.choice(("all", "any", "not", "not"))
    if kind == "not":
        return {"not": random_condition(rng, depth - 1)}
    return {kind: [random_condition(rng, depth - 1) for _ in range(rng.randint(2, 3))]}


def policies(rng: random.Random) -> tuple[str, dict[str, dict[str, Any]]]:
    """policies.yaml with POLICIES random conditions (each small enough for the engine), and the conditions."""
    conditions: dict[str, dict[str, Any]] = {}
    while len(conditions) < POLICIES:
        conditions[f"random-{len(conditions)}"] = random_condition(rng, rng.randint(1, 4))
    text = "policies:\n" + "".join(
        f"  - id: {rule_id}\n    description: random\n    when: {json.dumps(condition)}\n    message: m\n"
        for rule_id, condition in conditions.items()
    )
    return text, conditions


# --- the plain-Python reading --------------------------------------------------------------------------------

Truth = bool | None  # None: unknown


def _and(values: list[Truth]) -> Truth:
    return False if False in values else (None if None in values else True)


def _or(values: list[Truth]) -> Truth:
    return True if True in values else (None if None in values else False)


def _not(value: Truth) -> Truth:
    return None if value is None else not value


def _matches(value: Any, wanted: Any) -> bool:
    """A MATCH of values: exact text, a glob, true/false; a missing fact matches nothing."""
    if value is _MISSING:
        return False
    for want in wanted if isinstance(wanted, list) else [wanted]:
        if isinstance(want, bool) or not isinstance(value, str):
            if value == want and type(value) is type(want):
                return True
        elif (is_glob(want) and fnmatchcase(value, want)) or value == want:
            return True
    return False


_MISSING = object()


def parts(catalog: Catalog, value: str) -> dict[str, str]:
    head, dot, tail = value.partition(".")
    if not (dot and head and tail):
        return {}
    if head in catalog.products or tail in catalog.markets:
        return {"product": head, "market": tail}
    return {"group": head, "name": tail}


class Reading:
    """The facts of one request as the language describes them, and the truth of a condition for a change."""

    def __init__(self, catalog: Catalog, decision_input: DecisionInput) -> None:
        self.catalog = catalog
        self.input = decision_input
        self.enabled = {v for v in catalog.values if any(fnmatchcase(v, p) for p in decision_input.tenant_patterns)}
        stored = dict(decision_input.stored)
        self.before = {v: stored.get(v, "close") for v in catalog.values}
        self.after = dict(self.before)
        named: set[str] = set()
        for change in decision_input.changes:
            kind, status = change.get("permission_type"), change.get("permission_status")
            if isinstance(kind, str) and kind not in named:
                named.add(kind)
                if kind in catalog and kind in self.enabled and status in ("open", "close"):
                    self.after[kind] = status
        self.records = [self._record(i, c) for i, c in enumerate(decision_input.changes)]

    def _record(self, index: int, change: Mapping[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for name in ("permission_type", "permission_status"):
            value = change.get(name, _MISSING)
            record[f"{name}__kind"] = (
                "missing" if value is _MISSING else ("text" if isinstance(value, str) else "not_text")
            )
            if isinstance(value, str):
                record[name] = value
        kind = change.get("permission_type")
        if isinstance(kind, str):
            record.update(parts(self.catalog, kind))
            record["in_catalog"] = kind in self.catalog
            record["enabled_for_tenant"] = kind in self.enabled
            record["current_status"] = self.input.stored.get(kind, "close")
            earlier = [c.get("permission_type") for c in self.input.changes[:index]]
            record["named_earlier"] = kind in earlier
        else:
            record["named_earlier"] = False
        return record

    def truth(self, condition: Mapping[str, Any], record: Mapping[str, Any]) -> Truth:
        found: list[Truth] = []
        for key, value in condition.items():
            if key == "all":
                found.append(_and([self.truth(c, record) for c in value]))
            elif key == "any":
                found.append(_or([self.truth(c, record) for c in value]))
            elif key == "not":
                found.append(_not(self.truth(value, record)))
            elif key == "change":
                found.extend(self._change(field, want, record) for field, want in value.items())
            elif key == "account":
                for field, want in value.items():
                    seen = (
                        self.input.account_status if field == "status" else self.input.attributes.get(field, _MISSING)
                    )
                    found.append(_matches(seen, want))
            elif key == "tenant":
                found.append(_matches(self.input.tenant_id, value))
            elif key == "permission":
                found.extend(
                    self._permission(value, s, condition[s], record) for s in ("before", "after") if s in condition
                )
        return _and(found)

    @staticmethod
    def _change(field: str, want: Any, record: Mapping[str, Any]) -> bool:
        if isinstance(want, dict) and "is" in want:
            return record[f"{field}__kind"] == want["is"]
        if isinstance(want, dict):
            other = want["same_as"]
            return field in record and other in record and record[field] == record[other]
        return _matches(record.get(field, _MISSING), want)

    def _permission(self, template: str, state: str, status: str, record: Mapping[str, Any]) -> Truth:
        head, _, tail = template.partition(".")
        specs = []
        for spec in (head, tail):
            if spec.startswith("{"):
                if spec[1:-1] not in record:
                    return None  # the change cannot bind the placeholder
                specs.append((record[spec[1:-1]], False))
            else:
                specs.append((spec, is_glob(spec)))
        statuses = self.before if state == "before" else self.after
        named = [
            v
            for v in self.catalog.values
            if all(
                fnmatchcase(part, spec) if glob else part == spec
                for part, (spec, glob) in zip(v.split(".", 1), specs, strict=True)
            )
        ]
        is_open = any(statuses[v] == "open" for v in named)
        return is_open if status == "open" else not is_open


def random_input(rng: random.Random) -> DecisionInput:
    changes = [ch(rng.choice(TYPES), rng.choice(STATUSES)) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:  # a type named twice
        changes.append(ch(rng.choice(RELATED), rng.choice(("open", "close"))))
        changes.insert(0, dict(changes[-1]))
    return request(
        changes,
        stored={t: rng.choice(("open", "close")) for t in rng.sample(RELATED, rng.randint(0, 5))},
        attributes={
            name: rng.choice(values)
            for name, values in (
                ("account_type", ("cash", "margin")),
                ("residency", ("CN", "CA", "SG")),
                ("investor_class", ("retail", "professional")),
            )
            if rng.random() < 0.6
        },
        tenant=rng.choice(("t1", "t2", "sg_x", "hk")),
        patterns=rng.choice((("*",), ("stock.*", "options.*", "account.*"), ("stock.US",))),
        account_status=rng.choice(("active", "active", "deregistered")),
    )


@pytest.fixture(scope="module")
def random_policies(tmp_path_factory: pytest.TempPathFactory) -> tuple[DurableRulesEngine, dict[str, Any]]:
    text, conditions = policies(random.Random(2025))
    rule_set = load_rule_set(rules_dir(tmp_path_factory.mktemp("random"), text))
    for rule in rule_set.rules:
        try:
            clauses(rule.condition)
        except ConditionTooLarge:  # pragma: no cover - the seed is fixed; lint would refuse it
            pytest.fail(f"{rule.id} is too large for the engine")
    return DurableRulesEngine(rule_set), conditions


@pytest.mark.slow
def test_the_engine_reads_random_conditions_as_the_language_says(random_policies):
    engine, conditions = random_policies
    rng = random.Random(7)
    outcomes = {True: 0, False: 0}
    per_policy = {rule_id: set() for rule_id in conditions}
    for n in range(REQUESTS):
        decision_input = random_input(rng)
        reading = Reading(engine.rule_set.catalog, decision_input)
        held = decide(engine, decision_input, use_memo=n % 2 == 0).held
        for index, record in enumerate(reading.records):
            for rule_id, condition in conditions.items():
                expected = reading.truth(condition, record) is True
                assert (rule_id in held[index]) is expected, (rule_id, condition, decision_input, index)
                outcomes[expected] += 1
                per_policy[rule_id].add(expected)
    assert outcomes[True] > 2000 and outcomes[False] > 2000
    both = [rule_id for rule_id, seen in per_policy.items() if seen == {True, False}]
    assert len(both) >= POLICIES * 3 // 4, per_policy  # most random policies were seen holding and not holding
