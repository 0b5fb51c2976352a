"""A compiled ruleset is freed once no engine uses it: thousands of reloads in one process keep memory flat, an
engine released refuses politely, and engines sharing a ruleset keep it while one of them still uses it.

durable_rules 2.0.28 never frees the automaton it builds for a `matches` pattern (a glob) when it compiles a
ruleset (~29 kB each, app/rules/runtime/engine.py): reloads among a few versions reuse the rulesets kept, and
reloads that compile and delete a ruleset every time are measured on sets without a glob.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.runtime import engine as engine_module
from app.rules.runtime.decision import decide
from app.rules.runtime.engine import RULESETS_KEPT_UNUSED, DurableRulesEngine, EngineReleased, _process
from tests.rules.support import ch, outcome, request, rules_dir

RELOADS = 2_000
WARM_UP = 100


def policies(n: int, *, glob: bool = True) -> str:
    """A policy set of its own version: the n-th (its message differs), with a `matches` pattern (a glob)."""
    otc = '{permission_type: "otc.*", permission_status: open}' if glob else "{product: otc, permission_status: open}"
    return f"""\
policies:
  - id: deny-ipo
    description: IPO closed on JP and DE.
    when: {{change: {{product: ipo, market: [JP, DE], permission_status: open}}}}
    message: IPO subscriptions on {{market}} are not offered ({n})
  - id: warn-otc
    description: OTC needs a disclosure.
    enforcement: warn
    when: {{change: {otc}}}
    message: collect the disclosure ({n})
"""


def rule_set(target: Path, n: int, *, glob: bool = True) -> RuleSet:
    """The shipped validations and policies(n); without a glob anywhere when glob is False."""
    directory = rules_dir(target / f"set{n}", policies(n, glob=glob))
    if not glob:
        validation = directory / "validation.yaml"
        text = validation.read_text(encoding="utf-8")
        assert text.count('permission_type: "flag.*"') == 1
        validation.write_text(text.replace('permission_type: "flag.*"', "group: flag"), encoding="utf-8")
    return load_rule_set(directory)


def registered(engine: DurableRulesEngine) -> bool:
    return engine._name in engine._process.host._ruleset_directory


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def judged_by(engine: DurableRulesEngine, n: int) -> None:
    """The engine decides, with its own set's message (no memo: every reload asks durable_rules)."""
    denial = decide(engine, request([ch("ipo.JP", "open")]), use_memo=False).denial
    assert denial is not None and denial.rule.id == "deny-ipo" and denial.rule.message.endswith(f"({n})")


def reloads(sets: list[RuleSet]) -> tuple[int, int, int]:
    """As the live set swaps engines: each reload builds the next version's engine and drops the one it replaces;
    the versions take turns and every engine judges once. RSS before and after (after a warm-up), and how many
    of the measured reloads compiled their ruleset afresh."""
    engine = DurableRulesEngine(sets[0])
    last: dict[str, object] = {}  # per version, the compiled ruleset its last engine used
    fresh = 0
    for reload in range(1, WARM_UP + RELOADS + 1):
        if reload == WARM_UP + 1:
            gc.collect()
            before, started, fresh = resident_bytes(), time.perf_counter(), 0
        engine = DurableRulesEngine(sets[reload % len(sets)])
        judged_by(engine, reload % len(sets))
        fresh += last.get(engine.version) is not engine._compiled
        last[engine.version] = engine._compiled
    gc.collect()
    after, seconds = resident_bytes(), time.perf_counter() - started
    process = engine._process
    assert len(process.unused) <= RULESETS_KEPT_UNUSED
    assert set(process.host._ruleset_directory) == set(process.compiled)
    print(f"\nRSS {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB over {RELOADS} reloads in {seconds:.1f} s")
    return before, after, fresh


@pytest.mark.slow
def test_two_thousand_reloads_among_three_versions_keep_memory_flat(tmp_path: Path):
    """A reload back to a recent version takes its kept ruleset: nothing is compiled again."""
    before, after, fresh = reloads([rule_set(tmp_path, n) for n in range(3)])
    assert fresh == 0
    assert after <= before * 1.10, f"RSS grew from {before} to {after} bytes over {RELOADS} reloads"


@pytest.mark.slow
def test_two_thousand_reloads_that_each_compile_and_delete_a_ruleset_keep_memory_flat(tmp_path: Path):
    """More versions than are kept: every reload compiles one ruleset and deletes another."""
    before, after, fresh = reloads([rule_set(tmp_path, n, glob=False) for n in range(RULESETS_KEPT_UNUSED + 3)])
    assert fresh == RELOADS
    assert after <= before * 1.10, f"RSS grew from {before} to {after} bytes over {RELOADS} reloads"


def test_a_ruleset_no_engine_uses_is_deleted_beyond_the_few_kept(tmp_path: Path):
    engines = [DurableRulesEngine(rule_set(tmp_path, n)) for n in range(RULESETS_KEPT_UNUSED + 2)]
    assert all(registered(e) for e in engines)
    for engine in engines:
        engine.release()
    kept = [registered(e) for e in engines]
    assert kept == [False] * 2 + [True] * RULESETS_KEPT_UNUSED  # the oldest dropped go first
    process = engines[0]._process
    assert engines[0]._name not in process.compiled and engines[0]._name not in process.users


def test_an_engine_that_is_garbage_drops_its_ruleset(tmp_path: Path):
    """Counted when the next engine is built (the garbage collector runs none of the adapter's code)."""
    engines = [DurableRulesEngine(rule_set(tmp_path, n)) for n in range(RULESETS_KEPT_UNUSED + 1)]
    name = engines[0]._name
    assert _process().users[name] == 1
    del engines[0]  # nothing else holds it
    gc.collect()
    engines.append(DurableRulesEngine(rule_set(tmp_path, RULESETS_KEPT_UNUSED + 1)))
    assert name not in _process().users and name in _process().unused
    engines.clear()  # the others follow it: the first one dropped is deleted
    gc.collect()
    DurableRulesEngine(rule_set(tmp_path, RULESETS_KEPT_UNUSED + 2)).release()
    assert name not in _process().host._ruleset_directory


def test_a_ruleset_shared_by_two_engines_keeps_working_after_one_is_released(tmp_path: Path):
    shared = rule_set(tmp_path, 0)
    first, second = DurableRulesEngine(shared), DurableRulesEngine(shared)
    assert _process().users[first._name] == 2
    first.release()
    assert registered(second) and _process().users[second._name] == 1
    # Other rule sets come and go meanwhile: the shared one is in use and is never among those deleted.
    for n in range(1, RULESETS_KEPT_UNUSED + 3):
        DurableRulesEngine(rule_set(tmp_path, n)).release()
    assert registered(second)
    assert outcome(second, [ch("ipo.DE", "open")]) == (0, "deny-ipo")
    assert outcome(second, [ch("stock.US", "open")]) is None
    judged_by(second, 0)


def test_a_released_engine_refuses_politely_also_once_its_ruleset_is_freed(tmp_path: Path):
    engine = DurableRulesEngine(rule_set(tmp_path, 0))
    evaluation = engine.evaluate(request([ch("ipo.JP", "open")]))
    engine.release()
    engine.release()  # twice: nothing more happens
    assert engine.released
    for n in range(1, RULESETS_KEPT_UNUSED + 2):  # push it out of the few kept
        DurableRulesEngine(rule_set(tmp_path, n)).release()
    assert not registered(engine)
    for use_memo in (True, False):
        with pytest.raises(EngineReleased, match="released"):
            engine.evaluate(request([ch("ipo.JP", "open")]), use_memo=use_memo)
    assert evaluation.message_values(0)["market"] == "JP"  # what was decided before stays readable


def test_a_version_built_again_after_its_ruleset_was_freed_decides_as_before(tmp_path: Path):
    set0 = rule_set(tmp_path, 0)
    engine = DurableRulesEngine(set0)
    expected = outcome(engine, [ch("ipo.JP", "open")])
    engine.release()
    for n in range(1, RULESETS_KEPT_UNUSED + 2):
        DurableRulesEngine(rule_set(tmp_path, n)).release()
    again = DurableRulesEngine(set0)
    assert registered(again) and not again.released
    assert outcome(again, [ch("ipo.JP", "open")]) == expected == (0, "deny-ipo")


def test_threads_sharing_an_engine_get_the_verdicts_one_thread_gets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The memo is read and written under the engine's lock. With six inputs, a memo of four and threads switched
    as often as the interpreter can, a verdict found in the memo is evicted by another thread before it is read,
    unless the lock prevents it (without it this raised KeyError in every run tried)."""
    monkeypatch.setattr(engine_module, "MEMO_SIZE", 4)
    engine = DurableRulesEngine(rule_set(tmp_path, 0))
    inputs = [
        request([ch(f"{product}.{market}", status)])
        for product in ("ipo", "otc")
        for market in ("JP", "DE")
        for status in ("open", "close")
    ][:6]
    expected = [engine.evaluate(one, use_memo=False).held for one in inputs]
    failures: list[BaseException] = []

    def decide_all(offset: int) -> None:
        try:
            for round_ in range(400):
                for i in range(len(inputs)):
                    at = (i * (offset + 1) + round_) % len(inputs)
                    assert engine.evaluate(inputs[at]).held == expected[at]
        except BaseException as exc:  # reported by the test's own thread
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=decide_all, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert engine.memo_hits + engine.memo_misses == 4 * 400 * len(inputs)
