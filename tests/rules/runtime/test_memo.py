"""The adapter's memo: a bounded cache of the engine's own verdicts, keyed on exactly what the compiled rules read."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.runtime.decision import Decision, decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import MEMO_MAX_TEXT, MEMO_SIZE, DurableRulesEngine
from tests.rules.language.test_parser_oracle import policies, random_input
from tests.rules.runtime.test_engine_endurance import ENABLED_PATTERNS, ChangeMaker
from tests.rules.support import BROKER_POLICIES, NOON, ch, request, rules_dir
from tests.support import SHIPPED_RULES, copy_rules


@pytest.fixture(scope="module")
def rule_set() -> RuleSet:
    return load_rule_set(SHIPPED_RULES)


@pytest.fixture(scope="module")
def broker_set() -> RuleSet:
    return load_rule_set(BROKER_POLICIES)


def seen(decision: Decision) -> tuple[Any, ...]:
    """Everything a caller, the decision log and the metrics can see of a decision."""

    def hits(found: Any) -> list[tuple[int, str, str]]:
        return [(h.index, h.rule.id, h.message) for h in found]

    denial = None if decision.denial is None else hits([decision.denial])
    return decision.held, denial, hits(decision.warnings), hits(decision.dryruns), decision.rule_set_version


def test_memoised_verdicts_equal_the_engines_on_random_traffic(rule_set):
    engine = DurableRulesEngine(rule_set)
    rng = random.Random(7)
    maker = ChangeMaker(rule_set, rng)
    catalog = rule_set.catalog
    for _ in range(3000):
        current = {t: rng.choice(("open", "close")) for t in rng.sample(catalog.values, 5)}
        changes = maker.batch(current)
        patterns = rng.choice((("*",), ("stock.*", "account.*"), (), ENABLED_PATTERNS))
        decision_input = request(changes, stored=current, patterns=patterns)
        memoised = decide(engine, decision_input)
        direct = decide(engine, decision_input, use_memo=False)
        assert seen(memoised) == seen(direct), changes  # messages are built from this request's own facts
    assert engine.memo_hits > 1000
    assert 0 < len(engine._memo) <= MEMO_SIZE


OTHER_OPTIONS = ("options.SG", "options.UK", "options.DE", "options.AU")
BROKER_TYPES = (
    "options.US",
    "options.HK",
    "options.JP",
    "stock.US",
    "stock.HK",
    "stock.SH",
    "stock.SZ",
    "shortsell.US",
    "va.OSL",
    "ipo.JP",
    "ipo.DE",
    "ipo.US",
    "account.withdraw",
    "account.deposit",
    "otc.SG",
    "stockgrey.HK",
    "account.trade",
)
MOMENTS = (
    datetime(2025, 1, 15, tzinfo=UTC),
    datetime(2025, 2, 1, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2027, 6, 1, tzinfo=UTC),
    datetime(2030, 1, 1, tzinfo=UTC),
)


def random_broker_input(rng: random.Random) -> DecisionInput:
    """A request over the types the broker policies relate, with random state, attributes and time."""
    stored = {t: rng.choice(("open", "close")) for t in rng.sample(BROKER_TYPES, rng.randint(0, 6))}
    if rng.random() < 0.2:  # options on other markets open: options-at-most-3-markets counts them
        stored.update(dict.fromkeys(rng.sample(OTHER_OPTIONS, rng.randint(1, 3)), "open"))
    changes = [
        ch(t, rng.choice(("open", "close", "open")))
        for t in rng.sample(BROKER_TYPES, rng.randint(1, 4)) + rng.choice(([], [], ["stock.US"]))
    ]
    attributes = {
        name: rng.choice(values)
        for name, values in (
            ("account_type", ("cash", "margin")),
            ("residency", ("CN", "SG", "HK")),
            ("investor_class", ("retail", "professional")),
        )
        if rng.random() < 0.7
    }
    return request(
        changes,
        stored=stored,
        attributes=attributes,
        tenant=rng.choice(("t1", "t2")),
        patterns=rng.choice((("*",), ("stock.*", "options.*", "account.*"))),
        at=rng.choice(MOMENTS) + timedelta(seconds=rng.choice((0, 1, 3600))),
    )


def test_memoised_broker_decisions_equal_the_engines(broker_set):
    """Relations, attributes and windows: the memo key must carry each, or a remembered verdict is wrong."""
    engine = DurableRulesEngine(broker_set)
    rng = random.Random(11)
    kinds: set[str] = set()
    for _ in range(3000):
        decision_input = random_broker_input(rng)
        memoised = decide(engine, decision_input)
        assert seen(memoised) == seen(decide(engine, decision_input, use_memo=False)), decision_input
        kinds |= {rule_id for found in memoised.held for rule_id in found}
    assert engine.memo_hits > 1000
    policies = {r.id for r in broker_set.rules if r.is_policy}
    assert policies <= kinds  # every policy held somewhere: the comparison covered each


def test_a_repeat_is_answered_without_the_engine_and_keeps_its_own_message(rule_set):
    engine = DurableRulesEngine(rule_set)
    changes = [ch("stock.US", "open"), ch("stock.US", "close")]
    first = decide(engine, request(changes, patterns=("stock.US",)))
    remembered = len(engine._memo)
    shifted = [ch("stock.HK", "open"), *changes]
    second = decide(engine, request(shifted, patterns=("stock.US", "stock.HK")))
    assert first.denial.rule.id == second.denial.rule.id == "no-duplicate-type"
    assert first.denial.message == "changes[1].permission_type 'stock.US': is already named by changes[0]"
    assert second.denial.message == "changes[2].permission_type 'stock.US': is already named by changes[1]"
    assert len(engine._memo) == remembered + 1  # only stock.HK was new to the engine
    assert (engine.memo_hits, engine.memo_misses) == (2, 3)


def test_the_memo_is_bounded_and_skips_long_values(rule_set):
    engine = DurableRulesEngine(rule_set)
    for n in range(MEMO_SIZE + 50):
        decide(engine, request([ch(f"x{n}", "open")], patterns=()))
    assert len(engine._memo) == MEMO_SIZE
    engine._memo.clear()
    for value in ("x" * (MEMO_MAX_TEXT + 1), "x" * 60 * 1024):
        assert decide(engine, request([ch(value, "open")])).denial.rule.id == "type-in-catalog"
    assert not engine._memo


def test_a_full_memo_answers_a_request_that_evicts_what_it_reads(rule_set):
    """A request with a new change and a remembered one, when remembering the new verdict evicts the oldest
    entry, which is the one the same request reads."""
    engine = DurableRulesEngine(rule_set)
    for n in range(MEMO_SIZE):
        decide(engine, request([ch(f"x{n}", "open")]))
    assert len(engine._memo) == MEMO_SIZE
    decision = decide(engine, request([ch("new", "open"), ch("x0", "open")]))
    assert decision.held == (frozenset({"type-in-catalog", "type-enabled-for-tenant"}),) * 2
    assert len(engine._memo) == MEMO_SIZE
    assert (engine.memo_hits, engine.memo_misses) == (1, MEMO_SIZE + 1)


def test_long_context_values_are_not_held_in_memory(broker_set):
    """An attribute the rules read is part of the key: a long one is judged afresh rather than kept."""
    engine = DurableRulesEngine(broker_set)
    for n in range(3):
        residency = f"{n}" + "C" * 60 * 1024
        assert decide(engine, request([ch("stock.SH", "open")], attributes={"residency": residency})).accepted
    assert not engine._memo
    cn = decide(engine, request([ch("stock.SH", "open")], attributes={"residency": "CN"}))
    assert cn.denial.rule.id == "no-northbound-for-cn-residents"
    assert len(engine._memo) == 1


def test_a_new_rule_set_starts_with_an_empty_memo(rule_set, tmp_path):
    engine = DurableRulesEngine(rule_set)
    decide(engine, request([ch("stock.US", "open")]))
    rules = copy_rules(tmp_path)
    (rules / "validation.yaml").write_text(
        (rules / "validation.yaml").read_text().replace("message: is required", "message: must be given")
    )
    reloaded = DurableRulesEngine(load_rule_set(rules))
    assert reloaded.version != engine.version and not reloaded._memo


# --- the key is exactly what the rules read ------------------------------------------------------------------


def hits_after(engine: DurableRulesEngine, inputs: list[DecisionInput]) -> int:
    before = engine.memo_hits
    for decision_input in inputs:
        decide(engine, decision_input)
    return engine.memo_hits - before


def test_facts_no_rule_reads_do_not_split_the_memo(broker_set, rule_set):
    broker = DurableRulesEngine(broker_set)
    # otc.SG is judged by the validations and otc-open-warning only: the tenant, an attribute no rule tests
    # for it... all read by some rule, so they split; but the time within one window interval does not.
    change = [ch("otc.SG", "open")]
    moments = [datetime(2027, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in range(5)]
    assert hits_after(broker, [request(change, at=m) for m in moments]) == 4
    # Stored permissions no relation names for this change do not split it either.
    stored = [{}, {"account.trade": "open"}, {"va.OSL": "open", "trade.fix": "open"}]
    assert hits_after(broker, [request(change, stored=s, at=moments[0]) for s in stored]) == 3
    # The shipped validations read no context at all: tenant, attributes and time never split their memo.
    shipped = DurableRulesEngine(rule_set)
    inputs = [
        request(change, tenant=t, attributes=a, at=m)
        for t, a, m in (("t1", {}, moments[0]), ("t2", {"residency": "CN"}, moments[1]), ("t3", {}, MOMENTS[0]))
    ]
    assert hits_after(shipped, inputs) == 2


def test_facts_a_rule_reads_split_the_memo(broker_set):
    engine = DurableRulesEngine(broker_set)
    options = [ch("options.US", "open")]
    assert decide(engine, request(options)).denial.rule.id == "options-need-stock"
    assert decide(engine, request(options, stored={"stock.US": "open"})).accepted  # a related permission
    assert decide(engine, request(options, stored={"stock.HK": "open"})).denial.rule.id == "options-need-stock"
    shortsell = [ch("shortsell.US", "open")]
    assert decide(engine, request(shortsell)).denial.rule.id == "shortsell-margin-only"
    assert decide(engine, request(shortsell, attributes={"account_type": "margin"})).accepted
    assert decide(engine, request(shortsell, attributes={"account_type": "cash"})).denial is not None
    withdraw = [ch("account.withdraw", "open")]
    edge = datetime(2026, 1, 1, tzinfo=UTC)
    assert decide(engine, request(withdraw, at=edge - timedelta(microseconds=1))).accepted
    assert decide(engine, request(withdraw, at=edge)).denial.rule.id == "withdraw-freeze"
    assert decide(engine, request(withdraw, at=edge + timedelta(days=1))).denial.rule.id == "withdraw-freeze"
    assert decide(engine, request(withdraw, at=datetime(2030, 1, 1, tzinfo=UTC))).accepted


# --- exact on any rule set: random policies, recombined requests -----------------------------------------------

EDGES = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), datetime(2028, 6, 1, tzinfo=UTC))
WINDOWS = ((EDGES[0], EDGES[1]), (EDGES[1], None), (None, EDGES[2]), (EDGES[0], EDGES[2]))
MESSAGE = (
    "{permission_type}/{permission_status}/{current_status}/{product}.{market}/{earlier_index}/{tenant}/{residency}"
)


# A plain test of a change field: the memo knows from the change alone that a policy starting with one cannot
# hold for a change it refuses, and leaves what the rest of that policy reads out of the change's key.
GUARDS: tuple[dict[str, Any], ...] = (
    {"change": {"market": "US"}},
    {"change": {"product": ["options", "stock"]}},
    {"change": {"permission_status": "open"}},
    {"change": {"group": "account"}},
    {"change": {"permission_type": ["stock.HK", "options.HK", "va.OSL"]}},
)


def window_yaml(start: datetime | None, end: datetime | None) -> str:
    """A policy's from / until lines (each only when the edge is set)."""
    return "".join(
        f"    {key}: {moment.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        for key, moment in (("from", start), ("until", end))
        if moment is not None
    )


def random_policy_set(rng: random.Random, target: Path, *, guarded: bool) -> RuleSet:
    """Random policies of every kind of test (tests/rules/language/test_parser_oracle.py), a third of them in a window,
    some warn or dryrun, each message showing every fact a message can show. Guarded: twelve policies, each
    one of GUARDS and a random condition."""
    _, conditions = policies(rng)
    if guarded:
        conditions = {
            rule_id: {"all": [rng.choice(GUARDS), condition]} for rule_id, condition in list(conditions.items())[:12]
        }
    text = "policies:\n"
    for rule_id, condition in conditions.items():
        text += f"  - id: {rule_id}\n    description: random\n    when: {json.dumps(condition)}\n"
        text += (
            f"    message: {json.dumps(MESSAGE)}\n    enforcement: {rng.choice(('deny', 'deny', 'warn', 'dryrun'))}\n"
        )
        if rng.random() < 0.33:
            text += window_yaml(*rng.choice(WINDOWS))
    return load_rule_set(rules_dir(target, text))


@pytest.mark.parametrize(
    "guarded",
    [pytest.param(False, marks=pytest.mark.slow), True],  # any policies: the slower half, in the slow run
    ids=["any-policies", "guarded-policies"],
)
def test_the_memo_never_answers_otherwise_than_the_engine(tmp_path, guarded):
    """Requests recombined from small pools of changes, stored states, attributes, tenants, tenant configs,
    account statuses and times around every window edge, so that most keys meet again under other facts: any
    fact the rules read and the key left out would show as a remembered verdict the engine would not give."""
    rng = random.Random(13)
    engine = DurableRulesEngine(random_policy_set(rng, tmp_path, guarded=guarded))
    pools = [random_input(rng) for _ in range(30)]  # changes from all of them, the rest from a few
    few = pools[:3]
    moments = [edge + timedelta(seconds=s) for edge in EDGES for s in (-1, 0)] + [NOON]
    held_somewhere: set[str] = set()
    for n in range(1000):
        decision_input = DecisionInput(
            tenant_id=rng.choice(few).tenant_id,
            tenant_patterns=rng.choice(few).tenant_patterns,
            changes=rng.choice(pools).changes,
            stored=rng.choice(pools[:8]).stored,
            account_status=rng.choice(few).account_status,
            attributes=rng.choice(few).attributes,
            at=rng.choice(moments),
        )
        remembered = decide(engine, decision_input)
        direct = decide(engine, decision_input, use_memo=False)
        assert seen(remembered) == seen(direct), (n, decision_input)
        held_somewhere |= {rule_id for found in direct.held for rule_id in found}
    assert engine.memo_hits > 800 and engine.memo_misses > 1000, (engine.memo_hits, engine.memo_misses)
    policies_held = {rule_id for rule_id in held_somewhere if rule_id.startswith("random-")}
    assert len(policies_held) >= (9 if guarded else 30)  # most policies held somewhere: the comparison covered them
