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
import random
import statistics
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.rules.language.model import RuleSet
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from bench.corpus import Picker, corpus, moments, request
from bench.reference import Oracle
from bench.scenarios import ONE, REJECTED, TEN

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
        from bench.zen_rules import ZenEvaluator, engine_facts, table_path

        by_name[ZEN] = ZenEvaluator(engine_facts(engine), json.loads(table_path(name).read_text())).held
    except ImportError:
        notes.append("zen-engine is not installed (`.venv/bin/pip install zen-engine`): its column is empty")
    return Evaluators(rule_set, engine, oracle, by_name, notes)


def _shown(decision_input: DecisionInput) -> str:
    return str(decision_input)[:600]


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


# ---------------------------------------------------------------------------------------------------- the memo


@dataclass
class Traffic:
    """One kind of traffic through a fresh adapter: how often the memo answered, and µs per change of each
    evaluator over the same requests (the adapter in one pass, as a worker meets them)."""

    name: str
    requests: int
    changes: int
    hit_rate: float
    memo_entries: int
    per_change: dict[str, float]


def service_traffic(rule_set: RuleSet, values: Sequence[str], count: int) -> list[DecisionInput]:
    """Requests as bench/load.py sends them: 1-change and 10-change accepted batches that open, then close, the
    first served values of their account, and a 10-change batch rejected at its last change; no attributes."""
    now = datetime.now(UTC)
    out = []
    for n in range(count):
        scenario = (ONE, TEN, REJECTED)[n % 3]
        status = "open" if (n // 3) % 2 == 0 or scenario is REJECTED else "close"
        changes = tuple(scenario.changes(values, status))
        stored = {c["permission_type"]: "open" for c in changes} if status == "close" else {}
        out.append(DecisionInput("bench", ("*",), changes, stored=stored, at=now))
    return out


def distinct_accounts(rule_set: RuleSet, values: Sequence[str], count: int, seed: int = 3) -> list[DecisionInput]:
    """Every request from an account never seen before: its own stored state (each catalog permission open with
    probability 0.3), its own attributes (any declared value; any two-letter code for a pattern), a random
    status per change of the 10-change batch, a random second."""
    rng = random.Random(seed)
    catalog = rule_set.catalog.values
    letters = string.ascii_uppercase
    out = []
    for n in range(count):
        stored = {v: "open" for v in catalog if rng.random() < 0.3}
        attributes = {
            a.name: rng.choice(a.values) if a.values else rng.choice(letters) + rng.choice(letters)
            for a in rule_set.attributes
            if rng.random() < 0.8
        }
        changes = tuple({"permission_type": v, "permission_status": rng.choice(("open", "close"))} for v in values[:10])
        at = datetime.now(UTC) + timedelta(seconds=n)
        out.append(DecisionInput(f"tenant{n % 7}", ("*",), changes, stored=stored, attributes=attributes, at=at))
    return out


def never_seen(rule_set: RuleSet, count: int, seed: int = 17) -> list[DecisionInput]:
    """Seeded corpus requests (bench/corpus.py) of 1, 10 and 100 changes, none repeated: new tenants, configs,
    states, attributes and times around every window edge, malformed changes among them."""
    rng = random.Random(seed)
    picker, times = Picker(rule_set, rng), moments(rule_set)
    return [request(rule_set, (1, 10, 1, 10, 100)[n % 5], rng, picker, times) for n in range(count)]


def memo_traffic(rule_set: RuleSet, name: str, values: Sequence[str], *, count: int) -> list[Traffic]:
    """The memo's hit rate and the evaluators' cost on the benchmark's traffic and on traffic made to miss."""
    out = []
    for label, requests in (
        ("the benchmark's service traffic", service_traffic(rule_set, values, count)),
        ("distinct accounts and states", distinct_accounts(rule_set, values, count)),
        ("never-seen corpus requests", never_seen(rule_set, count)),
    ):
        ev = evaluators(rule_set, name)  # a fresh adapter: an empty memo
        changes = sum(len(r.changes) for r in requests)
        per_change = {}
        verdicts: dict[str, list[Held]] = {}
        for evaluator in (ADAPTER, ENGINE_PATH, ZEN):
            if evaluator in ev.by_name:
                evaluate = ev.by_name[evaluator]
                began = time.perf_counter()
                verdicts[evaluator] = [evaluate(decision_input) for decision_input in requests]
                per_change[evaluator] = (time.perf_counter() - began) / changes * 1e6
        for evaluator, found in verdicts.items():
            if found != verdicts[ENGINE_PATH]:
                raise AssertionError(f"{label}: {evaluator} differs from the engine path")
        engine = ev.engine
        looked_up = engine.memo_hits + engine.memo_misses
        rate = engine.memo_hits / looked_up if looked_up else float("nan")
        out.append(Traffic(label, len(requests), changes, rate, len(engine._memo), per_change))
    return out
