"""Counts through decide(): the count of change i is the number of permissions the pattern names that are open
after the whole request, those a later change opens left out (so the change that would exceed the bound is the
one refused, and a close counts wherever it stands), a close is never refused by a count, a placeholder binds
the pattern to the judged change, and the memo keys on the count."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.model import pattern_names
from app.rules.runtime.decision import decide
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.runtime.facts import count_facts, open_for_count
from tests.rules.support import ch, outcome, policies_held, request, rules_dir

POLICIES = """\
policies:
  - id: options-at-most-3
    description: At most 3 markets of options.
    when:
      count: {permission: "options.*", after: open, more_than: 3}
    message: "at most 3 markets of options open at once: not {permission_type}"

  - id: one-market-per-product
    description: At most 1 market of each of ipo and warrant.
    when:
      change: {product: [ipo, warrant]}
      count: {permission: "{product}.*", after: open, more_than: 1}
    message: "one market of {product} at most"

  - id: watch-a-second-hk
    description: Watched - a second permission on HK, unless it is stock.
    enforcement: dryrun
    when:
      not: {change: {product: stock}}
      count: {permission: "*.{market}", after: open, more_than: 1}
    message: watched
"""

OPTIONS = [f"options.{m}" for m in ("US", "HK", "SG", "JP", "UK", "DE")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DurableRulesEngine:
    return DurableRulesEngine(load_rule_set(rules_dir(tmp_path_factory.mktemp("counts"), POLICIES)))


def opened(*types: str) -> dict[str, str]:
    return dict.fromkeys(types, "open")


def test_with_two_open_and_two_more_asked_the_second_asked_is_refused(engine):
    changes = [ch("options.SG", "open"), ch("options.JP", "open")]
    assert outcome(engine, changes, stored=opened("options.US", "options.HK")) == (1, "options-at-most-3")


def test_the_change_that_reaches_the_bound_is_allowed(engine):
    assert outcome(engine, [ch("options.SG", "open")], stored=opened("options.US", "options.HK")) is None
    assert outcome(engine, [ch("options.JP", "open")], stored=opened(*OPTIONS[:3])) == (0, "options-at-most-3")


def test_a_close_counts_wherever_it_stands_in_the_request(engine):
    stored = opened(*OPTIONS[:3])
    assert outcome(engine, [ch("options.US", "close"), ch("options.JP", "open")], stored=stored) is None
    assert outcome(engine, [ch("options.JP", "open"), ch("options.US", "close")], stored=stored) is None
    opening_two = [ch("options.JP", "open"), ch("options.UK", "open"), ch("options.US", "close")]
    assert outcome(engine, opening_two, stored=opened(*OPTIONS[:2])) is None  # 3 open after the request
    assert outcome(engine, opening_two, stored=stored) == (1, "options-at-most-3")  # 4 after: the second opening


def test_a_later_opening_is_not_counted_for_an_earlier_change(engine):
    catalog, enabled = engine.rule_set.catalog, frozenset(OPTIONS)

    def counts(changes: list[dict[str, str]], stored: dict[str, str]) -> list[tuple[int, ...]]:
        return count_facts(
            tuple(changes), catalog=catalog, enabled=enabled, stored=stored, patterns=(("options", "*"),)
        )

    two = opened(*OPTIONS[:2])
    assert counts([ch("options.SG", "open"), ch("options.JP", "open")], two) == [(3,), (4,)]
    assert counts([ch("options.SG", "open"), ch("options.JP", "open"), ch("options.US", "close")], two) == [
        (2,),
        (3,),
        (0,),
    ]
    # re-opening one already open opens nothing: it stays counted for the changes before it
    assert counts([ch("options.SG", "open"), ch("options.US", "open")], two) == [(3,), (3,)]


def test_the_counts_of_every_change_are_those_each_change_sees_open(engine):
    """count_facts (one pass for the whole request) agrees with open_for_count (what one change sees) on random
    requests: invalid statuses, types named twice, disabled types, re-openings and closes anywhere."""
    rng = random.Random(11)
    catalog = engine.rule_set.catalog
    pool = [*OPTIONS, "ipo.US", "ipo.HK", "warrant.HK", "stock.HK", "stock.US", "nope.XX"]
    patterns = (("options", "*"), ("{product}", "*"), ("*", "{market}"))
    for _ in range(300):
        stored = {t: rng.choice(("open", "close")) for t in rng.sample(pool, rng.randint(0, 8))}
        changes = tuple(
            ch(rng.choice(pool), rng.choice(("open", "open", "close", "OPEN"))) for _ in range(rng.randint(1, 6))
        )
        enabled = frozenset(rng.sample(pool, rng.randint(6, len(pool))))
        found = count_facts(changes, catalog=catalog, enabled=enabled, stored=stored, patterns=patterns)
        for index, change in enumerate(changes):
            kind = change["permission_type"]
            opens = (
                change["permission_status"] == "open"
                and kind in catalog
                and kind in enabled
                and all(c["permission_type"] != kind for c in changes[:index])
            )
            seen = open_for_count(changes, index, catalog=catalog, enabled=enabled, stored=stored)
            parts = catalog.parts(kind)
            expected = tuple(
                sum(1 for other in seen if pattern_names(*p, *catalog.parts(other).values(), parts))
                if opens and pattern_names(*p, *parts.values(), parts)
                else 0
                for p in patterns
            )
            assert found[index] == expected, (stored, changes, index)


def test_a_message_reads_the_count_of_the_whole_request(engine):
    changes = (ch("options.JP", "open"), ch("options.US", "close"))
    decision_input = request(changes, stored=opened(*OPTIONS[:3]))
    record = engine.facts_of(decision_input).changes[0]
    values = engine.message_values(decision_input, 0)
    assert {k: v for k, v in values.items() if k.startswith("count_")} == {
        k: v for k, v in record.items() if k.startswith("count_")
    }
    assert 3 in values.values() and 4 not in values.values()  # options.* counts 3 after the request, not 4


def test_a_close_is_never_refused_by_a_count(engine):
    stored = opened(*OPTIONS)
    assert outcome(engine, [ch("options.US", "close")], stored=stored) is None
    assert outcome(engine, [ch("options.US", "close"), ch("options.HK", "close")], stored=stored) is None
    assert policies_held(engine, [ch("options.US", "close")], stored=stored) == [set()]


def test_changes_that_do_not_apply_are_not_counted(engine):
    stored = opened("options.US", "options.HK")
    # an invalid status, a type named twice (its first mention counts) and a type the tenant may not use
    assert outcome(engine, [ch("options.SG", "OPEN"), ch("options.JP", "open")], stored=stored) == (
        0,
        "status-open-or-close",
    )
    held = policies_held(engine, [ch("options.SG", "open"), ch("options.SG", "open")], stored=stored)
    assert held == [set(), set()]  # refused as a duplicate; the second mention opens nothing
    found = count_facts(
        (ch("options.SG", "OPEN"), ch("options.JP", "open"), ch("options.JP", "open"), ch("options.UK", "open")),
        catalog=engine.rule_set.catalog,
        enabled=frozenset(["options.SG", "options.JP"]),
        stored=stored,
        patterns=(("options", "*"),),
    )
    assert found == [(0,), (3,), (0,), (0,)]  # invalid, counted, named twice, not enabled


def test_a_placeholder_binds_the_pattern_to_the_judged_change(engine):
    assert outcome(engine, [ch("ipo.HK", "open")], stored=opened("ipo.US", "warrant.SG")) == (
        0,
        "one-market-per-product",
    )
    assert outcome(engine, [ch("warrant.HK", "open")], stored=opened("ipo.US", "ipo.SG")) is None
    assert outcome(engine, [ch("ipo.HK", "open"), ch("warrant.HK", "open"), ch("warrant.US", "open")]) == (
        2,
        "one-market-per-product",
    )


def test_a_tail_placeholder_counts_every_product_of_the_market(engine):
    decision = decide(engine, request([ch("warrant.HK", "open")], stored=opened("stock.HK")))
    assert [(h.index, h.rule.id) for h in decision.dryruns] == [(0, "watch-a-second-hk")]
    decision = decide(engine, request([ch("stock.HK", "open")], stored=opened("warrant.HK")))
    assert decision.dryruns == ()  # 2 on HK, but the policy leaves stock out
    decision = decide(engine, request([ch("warrant.HK", "open")], stored=opened("stock.US", "warrant.US")))
    assert decision.dryruns == ()


def test_the_memo_keys_on_the_count(engine):
    change = [ch("options.JP", "open")]
    assert outcome(engine, change, stored=opened(*OPTIONS[:2])) is None
    assert outcome(engine, change, stored=opened(*OPTIONS[:3])) == (0, "options-at-most-3")
    assert outcome(engine, change, stored=opened(*OPTIONS[:2], "stock.US")) is None
    assert outcome(engine, change, stored=opened(*OPTIONS[:2], "options.UK")) == (0, "options-at-most-3")


def test_remembered_count_verdicts_equal_the_engines(engine):
    rng = random.Random(7)
    pool = [*OPTIONS, "ipo.US", "ipo.HK", "warrant.HK", "warrant.SG", "stock.HK", "stock.US"]
    for n in range(300):
        stored = {t: rng.choice(("open", "close")) for t in rng.sample(pool, rng.randint(0, 8))}
        changes = [ch(rng.choice(pool), rng.choice(("open", "open", "close"))) for _ in range(rng.randint(1, 4))]
        patterns = ("*",) if rng.random() < 0.8 else ("options.*", "ipo.*")
        decision_input = request(changes, stored=stored, patterns=patterns)
        remembered, direct = decide(engine, decision_input), decide(engine, decision_input, use_memo=False)
        assert remembered.held == direct.held, (n, decision_input)
    assert engine.memo_hits > 100


def test_a_count_set_alone(tmp_path: Path):
    """Without validations deciding first, a count still holds only for the change that opens."""
    engine = DurableRulesEngine(load_rule_set(rules_dir(tmp_path, POLICIES)))
    held = policies_held(engine, [ch("options.US", "close"), ch("options.JP", "open")], stored=opened(*OPTIONS))
    assert held == [set(), {"options-at-most-3"}]
