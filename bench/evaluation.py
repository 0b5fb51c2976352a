"""Rule evaluation alone, per change, on identical inputs: the adapter, the plain-Python floor, zen-engine.

The inputs are a fixed, seeded corpus of requests of 1, 10 and 100 changes, mostly valid (as real traffic
is) with every kind of bad change mixed in, under three tenant configs and random stored states. Before
any timing, all evaluators must give identical verdicts on every change of the corpus, and every rule (and
``pass``) must be exercised. Timing then runs the evaluators side by side, alternating, round after round,
and keeps the median per change of each.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.rules.compiler import PASS_RULE_ID
from app.rules.engine import DurableRulesEngine
from app.rules.model import RuleSet

SIZES = (1, 10, 100)
TENANT_CONFIGS = (("*",), ("account.*", "stock.*", "options.US", "trade.*"), ("stock.*",))
Evaluate = Callable[..., list[str | None]]


@dataclass(frozen=True)
class Request:
    """One evaluation input: the request's changes, the tenant's enabled values, the account's state."""

    changes: list[dict[str, Any]]
    enabled: frozenset[str]
    current: dict[str, str]


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


def corpus(rule_set: RuleSet, *, per_size: Mapping[int, int], seed: int = 5) -> dict[int, list[Request]]:
    """Requests of each size: ~85 % of changes are well formed catalog values (some disabled, some no-ops)."""
    rng = random.Random(seed)
    values = rule_set.catalog.values
    configs = [frozenset(rule_set.catalog.expand(patterns)) for patterns in TENANT_CONFIGS]
    out: dict[int, list[Request]] = {}
    for size, count in per_size.items():
        requests = []
        for _ in range(count):
            changes: list[dict[str, Any]] = []
            for _ in range(size):
                if rng.random() < 0.85:
                    changes.append(
                        {"permission_type": rng.choice(values), "permission_status": rng.choice(["open", "close"])}
                    )
                else:
                    changes.append(_odd_change(rng, values, changes))
            current = {t: rng.choice(["open", "close"]) for t in rng.sample(values, rng.randint(0, 20))}
            requests.append(Request(changes, rng.choice(configs), current))
        out[size] = requests
    return out


def adapter_evaluate(engine: DurableRulesEngine) -> Evaluate:
    """The adapter as the other evaluators answer: the deciding rule id per change, None when it passes."""

    def evaluate(
        changes: Sequence[Mapping[str, Any]], *, enabled: frozenset[str], current: Mapping[str, str]
    ) -> list[str | None]:
        return [
            None if v.rule is None else v.rule.id for v in engine.evaluate(changes, enabled=enabled, current=current)
        ]

    return evaluate


def verify(evaluators: Mapping[str, Evaluate], requests: dict[int, list[Request]], rule_set: RuleSet) -> int:
    """Raise unless every evaluator gives the same verdicts on every change; returns the changes checked."""
    checked = 0
    seen: set[str] = set()
    names = list(evaluators)
    for batch in requests.values():
        for request in batch:
            answers = {
                name: evaluators[name](request.changes, enabled=request.enabled, current=request.current)
                for name in names
            }
            first = answers[names[0]]
            for name in names[1:]:
                if answers[name] != first:
                    raise AssertionError(f"verdicts differ: {names[0]}={first} {name}={answers[name]} on {request}")
            seen.update(v or PASS_RULE_ID for v in first)
            checked += len(first)
    missing = {r.id for r in rule_set.rules} | {PASS_RULE_ID}
    missing -= seen
    if missing:
        raise AssertionError(f"the corpus exercises no change for {sorted(missing)}")
    return checked


def time_per_change(
    evaluators: Mapping[str, Evaluate], requests: Sequence[Request], *, rounds: int
) -> dict[str, float]:
    """Median over rounds of µs per change for each evaluator; evaluators alternate within every round."""
    samples: dict[str, list[float]] = {name: [] for name in evaluators}
    changes = sum(len(r.changes) for r in requests)
    order = list(evaluators)
    for round_no in range(rounds):
        for name in order if round_no % 2 == 0 else reversed(order):
            evaluate = evaluators[name]
            began = time.perf_counter()
            for request in requests:
                evaluate(request.changes, enabled=request.enabled, current=request.current)
            samples[name].append((time.perf_counter() - began) / changes * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}
