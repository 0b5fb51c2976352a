"""The adapter's memo: a bounded cache of the engine's own verdicts, keyed on everything a rule can test."""

from __future__ import annotations

import random

import pytest

from app.rules.engine import MEMO_SIZE, DurableRulesEngine
from app.rules.facts import change_facts
from app.rules.loader import load_rule_set
from tests.rules.test_engine_endurance import ChangeMaker
from tests.support import SHIPPED_RULES


@pytest.fixture(scope="module")
def rule_set():
    return load_rule_set(SHIPPED_RULES)


def test_memoised_verdicts_equal_the_engines_on_random_traffic(rule_set):
    engine = DurableRulesEngine(rule_set)
    rng = random.Random(7)
    maker = ChangeMaker(rule_set, rng)
    catalog = rule_set.catalog
    for _ in range(3000):
        current = {t: rng.choice(("open", "close")) for t in rng.sample(catalog.values, 5)}
        changes = maker.batch(current)
        enabled = frozenset(catalog.expand(rng.choice((("*",), ("stock.*", "account.*"), ()))))
        facts = change_facts(changes, catalog=catalog, enabled=enabled, current=current)
        memoised = engine.evaluate(changes, enabled=enabled, current=current)
        direct = engine.evaluate_with_engine(facts)
        assert [(v.index, v.rule and v.rule.id) for v in memoised] == [(v.index, v.rule and v.rule.id) for v in direct]
        assert [v.facts for v in memoised] == facts  # messages are built from this request's own facts
    assert 0 < len(engine._memo) <= MEMO_SIZE


def test_a_repeat_is_answered_without_the_engine_and_keeps_its_own_message(rule_set):
    engine = DurableRulesEngine(rule_set)
    changes = [
        {"permission_type": "stock.US", "permission_status": "open"},
        {"permission_type": "stock.US", "permission_status": "close"},
    ]
    first = engine.evaluate(changes, enabled=frozenset({"stock.US"}), current={})
    remembered = len(engine._memo)
    shifted = [{"permission_type": "stock.HK", "permission_status": "open"}, *changes]
    second = engine.evaluate(shifted, enabled=frozenset({"stock.US", "stock.HK"}), current={})
    assert first[1].rule.id == second[2].rule.id == "no-duplicate-type"
    assert first[1].facts["earlier_index"] == 0 and second[2].facts["earlier_index"] == 1
    assert len(engine._memo) == remembered + 1  # only stock.HK was new to the engine


def test_the_memo_is_bounded_and_skips_long_values(rule_set):
    engine = DurableRulesEngine(rule_set)
    for n in range(MEMO_SIZE + 50):
        engine.evaluate([{"permission_type": f"x{n}", "permission_status": "open"}], enabled=frozenset(), current={})
    assert len(engine._memo) == MEMO_SIZE
    engine._memo.clear()
    engine.evaluate([{"permission_type": "x" * 500, "permission_status": "open"}], enabled=frozenset(), current={})
    assert not engine._memo


def test_a_new_rule_set_starts_with_an_empty_memo(rule_set, tmp_path):
    from tests.support import copy_rules

    engine = DurableRulesEngine(rule_set)
    engine.evaluate([{"permission_type": "stock.US", "permission_status": "open"}], enabled=frozenset(), current={})
    rules = copy_rules(tmp_path)
    (rules / "validation.yaml").write_text(
        (rules / "validation.yaml").read_text().replace("message: is required", "message: must be given")
    )
    reloaded = DurableRulesEngine(load_rule_set(rules))
    assert reloaded.version != engine.version and not reloaded._memo
