"""Rule evaluation alone, per change, on identical inputs: the adapter (with and without its memo), the plain-
Python oracle and zen-engine, for one rule set.

Every evaluator answers the same question for a DecisionInput: per change, the set of rule ids whose condition
held (what ``DurableRulesEngine.evaluate`` returns and ``decide()`` turns into a decision). Before any timing,
every evaluator must give the oracle's sets on every change of the seeded corpus (bench/corpus.py), decide()
must agree with the oracle's first denial, warnings and dryrun hits, and every rule must hold somewhere and some
change must pass. Timing then runs the evaluators side by side, alternating, round after round, and keeps the
median per change of each.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from app.rules.decision import DecisionInput, decide
from app.rules.engine import DurableRulesEngine
from app.rules.model import RuleSet
from bench.corpus import corpus
from bench.reference import Oracle

Held = tuple[frozenset[str], ...]
Evaluate = Callable[[DecisionInput], Held]
ADAPTER, ENGINE_PATH, PLAIN, ZEN = "adapter", "adapter, engine path", "plain Python", "zen-engine"


@dataclass
class Evaluators:
    """The evaluators of one rule set, by column name, and why a column is missing."""

    rule_set: RuleSet
    engine: DurableRulesEngine
    oracle: Oracle
    by_name: dict[str, Evaluate]
    notes: list[str]


def evaluators(rule_set: RuleSet, name: str) -> Evaluators:
    """The adapter as served (memo), its engine path, the oracle and (when installed) zen-engine."""
    engine = DurableRulesEngine(rule_set)
    oracle = Oracle(rule_set)
    by_name: dict[str, Evaluate] = {
        ADAPTER: lambda di: engine.evaluate(di).held,
        ENGINE_PATH: lambda di: engine.evaluate(di, use_memo=False).held,
        PLAIN: oracle.held,
    }
    notes = []
    try:
        from bench.zen_rules import ZenEvaluator, table_path

        by_name[ZEN] = ZenEvaluator(engine.facts_of, json.loads(table_path(name).read_text())).held
    except ImportError:
        notes.append("zen-engine is not installed (`.venv/bin/pip install zen-engine`): its column is empty")
    return Evaluators(rule_set, engine, oracle, by_name, notes)


def _shown(decision_input: DecisionInput) -> str:
    return str(decision_input.to_record())[:600]


def check_decision(ev: Evaluators, decision_input: DecisionInput, held: Held) -> None:
    """Raise unless decide() makes of a request what the oracle makes of the same verdicts."""
    decision = decide(ev.engine, decision_input)
    got = (
        None if decision.denial is None else (decision.denial.index, decision.denial.rule.id),
        tuple((h.index, h.rule.id) for h in decision.warnings),
        tuple((h.index, h.rule.id) for h in decision.dryruns),
    )
    expected = ev.oracle.decision(held)
    if got != expected:
        raise AssertionError(f"decide() gave {got}, the oracle {expected} on {_shown(decision_input)}")


def verify(ev: Evaluators, requests: Mapping[int, Sequence[DecisionInput]]) -> int:
    """Raise unless every evaluator gives the oracle's verdicts on every change; returns the changes checked."""
    checked = 0
    seen: set[str] = set()
    passed = False
    for batch in requests.values():
        for decision_input in batch:
            expected = ev.oracle.held(decision_input)
            for name, evaluate in ev.by_name.items():
                got = evaluate(decision_input)
                if got != expected:
                    diff = [
                        (i, sorted(g), sorted(e)) for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e
                    ]
                    raise AssertionError(
                        f"{name} differs from the oracle (change, got, expected): {diff[:3]} "
                        f"on {_shown(decision_input)}"
                    )
            check_decision(ev, decision_input, expected)
            for rules in expected:
                seen |= rules
                passed = passed or not rules
            checked += len(expected)
    missing = sorted({r.id for r in ev.rule_set.rules} - seen) + ([] if passed else ["(a change no rule holds for)"])
    if missing:
        raise AssertionError(f"the corpus exercises no change for {missing}")
    return checked


def time_per_change(
    by_name: Mapping[str, Evaluate], requests: Sequence[DecisionInput], *, rounds: int
) -> dict[str, float]:
    """Median over rounds of µs per change for each evaluator; evaluators alternate within every round."""
    samples: dict[str, list[float]] = {name: [] for name in by_name}
    changes = sum(len(r.changes) for r in requests)
    order = list(by_name)
    for round_no in range(rounds):
        for name in order if round_no % 2 == 0 else reversed(order):
            evaluate = by_name[name]
            began = time.perf_counter()
            for decision_input in requests:
                evaluate(decision_input)
            samples[name].append((time.perf_counter() - began) / changes * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


@dataclass
class Measured:
    """Part 3's outcome for one rule set."""

    name: str
    timings: dict[int, dict[str, float]]  # size -> evaluator -> µs per change
    checked: int
    notes: list[str]
    memo_hit_rate: float


def measure(rule_set: RuleSet, name: str, *, per_size: Mapping[int, int], rounds: int) -> Measured:
    """Verify, then time every evaluator of one rule set on its seeded corpus."""
    ev = evaluators(rule_set, name)
    requests = corpus(rule_set, per_size=per_size)
    checked = verify(ev, requests)
    engine = ev.engine
    hits, misses = engine.memo_hits, engine.memo_misses
    timings = {size: time_per_change(ev.by_name, requests[size], rounds=rounds) for size in requests}
    hits, misses = engine.memo_hits - hits, engine.memo_misses - misses
    rate = hits / (hits + misses) if hits + misses else float("nan")
    return Measured(name, timings, checked, ev.notes, rate)
