"""N decisions through decide() in one process, each checked against the oracle, with the process's RSS:
``python -m bench.endurance RULES_DIR DECISIONS`` prints a JSON summary.

The requests are drawn from the seeded corpus generator (bench/corpus.py) without end, cycling 20 requests of 1
change, 2 of 10 and 1 of 100, so the memo keeps meeting requests it has not seen (new attributes, stored
states, times) and durable_rules judges a good share of the changes itself: the engine's traps (sessions left
behind, swallowed exceptions, facts asserted twice) would show as errors or as growth. Run in its own process
so the RSS is the adapter's alone, as in a worker.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from app.rules.language.loader import load_rule_set
from app.rules.runtime.decision import decide
from app.rules.runtime.engine import DurableRulesEngine
from bench.corpus import Picker, moments, request
from bench.reference import Oracle

CYCLE = [1] * 20 + [10, 10, 100]  # 150 changes per 23 requests
WARM_UP = 0.1  # the memo (4,096 entries) fills within it: RSS is flat from there on, growing before


def rss_kib() -> int:
    """This process's resident set size, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(rules_dir: Path, decisions: int, seed: int = 11) -> dict[str, Any]:
    """Serve `decisions` changes through decide(); count disagreements with the oracle and exceptions."""
    rule_set = load_rule_set(rules_dir)
    engine, oracle = DurableRulesEngine(rule_set), Oracle(rule_set)
    rng = random.Random(seed)
    picker, times = Picker(rule_set, rng), moments(rule_set)
    rss: dict[str, int] = {"start": rss_kib()}
    curve: list[int] = []  # RSS at every tenth of the run
    done = requests = errors = 0
    samples: list[str] = []
    began = time.perf_counter()
    warm = int(decisions * WARM_UP)
    while done < decisions:
        size = CYCLE[requests % len(CYCLE)]
        decision_input = request(rule_set, size, rng, picker, times)
        try:
            decision = decide(engine, decision_input)
            held = oracle.held(decision_input)
            got = (
                None if decision.denial is None else (decision.denial.index, decision.denial.rule.id),
                tuple((h.index, h.rule.id) for h in decision.warnings),
                tuple((h.index, h.rule.id) for h in decision.dryruns),
            )
            if decision.held != held or got != oracle.decision(held):
                raise AssertionError(f"adapter {decision.held} / {got}, oracle {held} / {oracle.decision(held)}")
        except Exception as exc:  # counted and sampled: the run goes on to show whether the process recovers
            errors += 1
            if len(samples) < 3:
                samples.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        done += size
        requests += 1
        while len(curve) < 10 and done >= decisions * (len(curve) + 1) / 10:
            curve.append(rss_kib())
        if "warm" not in rss and done >= warm:
            rss["warm"] = rss_kib()
            began_measured, done_at_warm = time.perf_counter(), done
    elapsed = time.perf_counter() - began_measured
    return {
        "decisions": done,
        "requests": requests,
        "errors": errors,
        "error_samples": samples,
        "elapsed_s": time.perf_counter() - began,
        "decisions_per_s": (done - done_at_warm) / elapsed if elapsed else float("nan"),
        "engine_judged": engine.memo_misses,
        "memo_hits": engine.memo_hits,
        "rss_start_kib": rss["start"],
        "rss_warm_kib": rss["warm"],
        "rss_end_kib": rss_kib(),
        "rss_curve_kib": curve,
        "memo_entries": len(engine._memo),
    }


def main() -> None:
    json.dump(run(Path(sys.argv[1]), int(sys.argv[2])), sys.stdout)


if __name__ == "__main__":
    main()
