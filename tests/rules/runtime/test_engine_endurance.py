"""The durable_rules adapter in-process: thousands of decisions stay correct (each request's session is
deleted, also when the engine refuses the facts: durable_rules breaks for good after 1,024 undeleted sessions),
hostile strings do not break it, an exception swallowed inside the engine is caught, and engines for one rule
set share one registered ruleset (ENGINE-NOTES.md)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

import pytest
from durable import engine as durable_engine  # type: ignore[import-untyped]

from app.rules.language.loader import load_rule_set
from app.rules.language.model import RuleSet
from app.rules.runtime.decision import decide
from app.rules.runtime.engine import SESSION_ID, DurableRulesEngine, RulesEngineError
from app.rules.runtime.facts import RequestFacts
from tests.rules.support import BROKER_POLICIES, ch, request
from tests.support import PROJECT_ROOT, SHIPPED_RULES

EVALUATIONS = 20_000
ENABLED_PATTERNS = ("account.*", "stock.*", "options.US", "trade.*")  # the demo tenant of tests/support.py

RULE_CODES = {
    "type-required": 400101,
    "type-must-be-text": 400101,
    "type-banned-group": 400101,
    "type-in-catalog": 400101,
    "type-enabled-for-tenant": 400101,
    "status-required": 400102,
    "status-must-be-text": 400102,
    "status-open-or-close": 400102,
    "no-duplicate-type": 400104,
    "must-change-state": 400103,
}

_MISSING = object()


def expected_rule_ids(
    changes: Sequence[Mapping[str, Any]], *, catalog: Any, enabled: frozenset[str], current: Mapping[str, str]
) -> list[str | None]:
    """The model: for each change the first rule of rules/validation.yaml that rejects it, None when it passes."""
    verdicts: list[str | None] = []
    named: set[str] = set()
    for change in changes:
        permission_type = change.get("permission_type", _MISSING)
        status = change.get("permission_status", _MISSING)
        duplicate = isinstance(permission_type, str) and permission_type in named
        if isinstance(permission_type, str):
            named.add(permission_type)
        if permission_type is _MISSING:
            verdict: str | None = "type-required"
        elif not isinstance(permission_type, str):
            verdict = "type-must-be-text"
        elif fnmatchcase(permission_type, "flag.*"):
            verdict = "type-banned-group"
        elif permission_type not in catalog:
            verdict = "type-in-catalog"
        elif permission_type not in enabled:
            verdict = "type-enabled-for-tenant"
        elif status is _MISSING:
            verdict = "status-required"
        elif not isinstance(status, str):
            verdict = "status-must-be-text"
        elif status not in ("open", "close"):
            verdict = "status-open-or-close"
        elif duplicate:
            verdict = "no-duplicate-type"
        elif status == current.get(permission_type, "close"):
            verdict = "must-change-state"
        else:
            verdict = None
        verdicts.append(verdict)
    return verdicts


def expected_outcome(
    changes: Sequence[Mapping[str, Any]], *, catalog: Any, enabled: frozenset[str], current: Mapping[str, str]
) -> tuple[int, int, str | None]:
    """(code, failure_index, rule_id) of a whole request: the first change a rule rejects decides."""
    for index, rule_id in enumerate(expected_rule_ids(changes, catalog=catalog, enabled=enabled, current=current)):
        if rule_id is not None:
            return RULE_CODES[rule_id], index, rule_id
    return 0, 0, None


class ChangeMaker:
    """Random changes of every kind the rules tell apart, weighted towards valid ones."""

    BAD_TYPES = (
        "flag.options",
        "flag.warrant",
        "flag.",
        "stock.us",
        "Stock.US",
        "stock",
        "",
        "options.HK",
        "ipo.SG",
        "va.OSL",
        "questionnaire.risk",
        " stock.US",
        "stock.US ",
        "\ud800",
        "stock.US\x00",
        "flag.\x00",
        "flag.\n",
        "flag.\udfff",
        "stock.US\n",
        "x" * 2048,
    )
    BAD_STATUSES = ("OPEN", "Close", "opened", "", "open ", "closed", "on", "open\x00", "\ud800")
    NOT_TEXT = (1, 0, None, True, 1.5, ["stock.US"], {"v": "open"})

    def __init__(self, rule_set: RuleSet, rng: random.Random) -> None:
        self.catalog = rule_set.catalog
        self.enabled = frozenset(rule_set.catalog.expand(ENABLED_PATTERNS))
        self.enabled_list = sorted(self.enabled)
        self.rng = rng

    def valid(self, permission_type: str, current: Mapping[str, str]) -> dict[str, Any]:
        """A change that moves permission_type."""
        return {
            "permission_type": permission_type,
            "permission_status": "close" if current.get(permission_type, "close") == "open" else "open",
        }

    def bad(self, current: Mapping[str, str], earlier: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """A change that some rule rejects (which one the model says)."""
        rng = self.rng
        kind = rng.randrange(8)
        some_type = rng.choice(self.enabled_list)
        if kind == 0:
            return {"permission_status": "open"}
        if kind == 1:
            return {"permission_type": rng.choice(self.NOT_TEXT), "permission_status": "open"}
        if kind == 2:
            return {"permission_type": rng.choice(self.BAD_TYPES), "permission_status": rng.choice(("open", "close"))}
        if kind == 3:
            return {"permission_type": some_type}
        if kind == 4:
            return {"permission_type": some_type, "permission_status": rng.choice(self.NOT_TEXT)}
        if kind == 5:
            return {"permission_type": some_type, "permission_status": rng.choice(self.BAD_STATUSES)}
        named = [c["permission_type"] for c in earlier if isinstance(c.get("permission_type"), str)]
        if kind == 6 and named:
            return {"permission_type": rng.choice(named), "permission_status": rng.choice(("open", "close"))}
        return {"permission_type": some_type, "permission_status": current.get(some_type, "close")}

    def batch(self, current: Mapping[str, str]) -> list[dict[str, Any]]:
        """1 to 20 changes: mostly valid, often with one or two bad ones placed anywhere."""
        rng = self.rng
        size = rng.choice((1, 1, 2, 3, 4, 5, rng.randint(10, 20)))
        types = rng.sample(self.enabled_list, size)
        changes = [self.valid(t, current) for t in types]
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            changes.insert(rng.randint(0, len(changes)), self.bad(current, changes))
        return changes[:100]


@pytest.fixture(scope="module")
def rule_set() -> RuleSet:
    return load_rule_set(SHIPPED_RULES)


def verdict_ids(
    engine: DurableRulesEngine,
    changes: list[dict[str, Any]],
    *,
    current: Mapping[str, str],
    patterns: tuple[str, ...] = ENABLED_PATTERNS,
    use_memo: bool = True,
) -> list[str | None]:
    """Per change, the first rule (in file order) whose condition held, or None; through decide()."""
    decision = decide(engine, request(changes, stored=current, patterns=patterns), use_memo=use_memo)
    order = [rule.id for rule in engine.rule_set.rules]
    ids = [min(found, key=order.index) if found else None for found in decision.held]
    first = next(((i, r) for i, r in enumerate(ids) if r is not None), None)
    assert (None if decision.denial is None else (decision.denial.index, decision.denial.rule.id)) == first
    return ids


@pytest.mark.slow
def test_twenty_thousand_evaluations_give_the_right_verdicts(rule_set):
    # Two engines for the same rules, as after a reload of an unchanged rules/, used alternately.
    engines = (DurableRulesEngine(rule_set), DurableRulesEngine(load_rule_set(SHIPPED_RULES)))
    maker = ChangeMaker(rule_set, random.Random(20_000))
    current: dict[str, str] = {"account.trade": "open", "stock.HK": "open"}
    applied = rejected = changes_seen = 0
    started = time.perf_counter()
    for n in range(EVALUATIONS):
        changes = maker.batch(current)
        got = verdict_ids(engines[n % 2], changes, current=dict(current), use_memo=n % 4 < 2)
        want = expected_rule_ids(changes, catalog=rule_set.catalog, enabled=maker.enabled, current=current)
        assert got == want, (n, changes, current)
        changes_seen += len(changes)
        if all(v is None for v in want):
            current.update({c["permission_type"]: c["permission_status"] for c in changes})
            applied += 1
        else:
            rejected += 1
    elapsed = time.perf_counter() - started
    print(
        f"\n{EVALUATIONS} evaluations ({changes_seen} changes; {applied} batches pass, {rejected} rejected) "
        f"in {elapsed:.1f} s"
    )
    assert applied > 1_000 and rejected > 1_000  # both paths well exercised


@pytest.mark.parametrize(
    "hostile",
    ["\ud800", "stock.US\ud800", "\x00", "stock.US\x00", "\x00stock.US", "a" * 60 * 1024, "stock.US" + "x" * 60 * 1024],
    ids=["lone-surrogate", "type-then-surrogate", "nul", "type-then-nul", "nul-then-type", "60KB", "type-then-60KB"],
)
def test_hostile_permission_type_is_not_in_catalog_and_engine_keeps_answering(rule_set, hostile):
    engine = DurableRulesEngine(rule_set)
    state: dict[str, Any] = {"current": {"stock.HK": "open"}}
    batch = [
        {"permission_type": "stock.US", "permission_status": "open"},
        {"permission_type": hostile, "permission_status": "open"},
        {"permission_type": "stock.HK", "permission_status": "close"},
        {"permission_type": hostile, "permission_status": "close"},
    ]
    assert verdict_ids(engine, batch, **state) == [None, "type-in-catalog", None, "type-in-catalog"]
    assert verdict_ids(engine, batch, **state, use_memo=False) == [None, "type-in-catalog", None, "type-in-catalog"]
    denial = decide(engine, request(batch, stored=state["current"], patterns=ENABLED_PATTERNS)).denial
    assert denial is not None and denial.index == 1
    assert denial.message.startswith("changes[1].permission_type '") and len(denial.message) < 200

    # The engine still answers, correctly, for ordinary batches afterwards (and for the same batch again).
    for _ in range(3):
        assert verdict_ids(engine, [{"permission_type": "stock.US", "permission_status": "open"}], **state) == [None]
        assert verdict_ids(engine, [{"permission_type": "stock.HK", "permission_status": "open"}], **state) == [
            "must-change-state"
        ]
        assert verdict_ids(engine, batch, **state) == [None, "type-in-catalog", None, "type-in-catalog"]


@pytest.mark.parametrize("hostile", ["\ud800", "open\x00", "\x00", "o" * 60 * 1024])
def test_hostile_permission_status_is_refused_and_engine_keeps_answering(rule_set, hostile):
    engine = DurableRulesEngine(rule_set)
    state: dict[str, Any] = {"current": {}}
    batch = [
        {"permission_type": "stock.US", "permission_status": "open"},
        {"permission_type": "stock.SG", "permission_status": hostile},
    ]
    assert verdict_ids(engine, batch, **state) == [None, "status-open-or-close"]
    assert verdict_ids(engine, batch, **state, use_memo=False) == [None, "status-open-or-close"]
    assert verdict_ids(engine, [{"permission_type": "stock.SG", "permission_status": "close"}], **state) == [
        "must-change-state"
    ]


def test_two_engines_for_one_rule_set_share_one_registered_ruleset(rule_set):
    first = DurableRulesEngine(rule_set)
    host = first._process.host
    registered = len(host._ruleset_list)

    # A second engine for the same rules (loaded again: same version) registers nothing new and raises nothing.
    second = DurableRulesEngine(load_rule_set(SHIPPED_RULES))
    assert second.version == first.version
    assert second._process is first._process
    assert len(host._ruleset_list) == registered
    assert host.get_ruleset(second._name) is host.get_ruleset(first._name)

    state: dict[str, Any] = {"current": {"stock.US": "open"}}
    change = [{"permission_type": "stock.US", "permission_status": "open"}]
    for engine in (first, second, first, second):
        assert verdict_ids(engine, change, **state, use_memo=False) == ["must-change-state"]


def test_no_session_state_outlives_an_evaluation(rule_set):
    """The adapter deletes its session after every batch: the engine holds no state for it afterwards."""
    engine = DurableRulesEngine(rule_set)
    for changes in (
        [{"permission_type": "stock.US", "permission_status": "open"}],
        [{"permission_type": "flag.options", "permission_status": "open"}] * 3,
    ):
        engine.evaluate(request(changes), use_memo=False)
        assert_no_session(engine)


def assert_no_session(engine: DurableRulesEngine) -> None:
    with pytest.raises(Exception, match="error code: 309"):  # 309: no state for this session id
        engine._process.host.get_state(engine._name, SESSION_ID)


def _with_records(engine: DurableRulesEngine, monkeypatch: pytest.MonkeyPatch, edit: Any) -> None:
    """Make engine.facts_of hand the engine edited change records (as a bug in the adapter would)."""
    facts_of = engine.facts_of

    def edited(decision_input: Any) -> RequestFacts:
        facts = facts_of(decision_input)
        return RequestFacts(facts.context, facts.permissions, edit(facts.changes), facts.messages)

    monkeypatch.setattr(engine, "facts_of", edited)


REFUSALS = """
import sys
from app.rules.runtime.engine import DurableRulesEngine, RulesEngineError
from app.rules.runtime.facts import RequestFacts
from app.rules.language.loader import load_rule_set
from tests.rules.support import ch, request
from tests.rules.runtime.test_engine_endurance import assert_no_session
from tests.support import SHIPPED_RULES

engine = DurableRulesEngine(load_rule_set(SHIPPED_RULES))
facts_of = engine.facts_of
edits = {
    "identical": lambda records: [*records, records[-1]],
    "unhandled": lambda records: [*records, {**records[-1], "t": "nobody-handles-this"}],
}
normal = request([ch("stock.US", "open"), ch("stock.US", "close")])
for n in range(1100):  # more than the engine's 1,024 session slots
    edit = edits[sys.argv[1]]
    engine.facts_of = lambda di: (lambda f: RequestFacts(f.context, f.permissions, edit(f.changes), f.messages))(
        facts_of(di)
    )
    try:
        engine.evaluate(request([ch("stock.US", "open"), ch("stock.HK", "open")]), use_memo=False)
    except RulesEngineError as exc:
        assert "refused" in str(exc), exc
    else:
        raise AssertionError("the engine took the facts")
    assert_no_session(engine)
    engine.facts_of = facts_of
    held = engine.evaluate(normal, use_memo=False).held
    assert held == (frozenset(), frozenset({"no-duplicate-type", "must-change-state"})), held
print("refusals-ok", flush=True)
"""


@pytest.mark.parametrize("refusal", ["identical", "unhandled"])
def test_the_session_is_deleted_safely_when_the_engine_refuses_the_facts(refusal):
    """The engine refuses a fact identical to one already asserted, or one no pattern handles, after taking
    the facts before it; the session must not survive into the next request, and deleting it must not
    corrupt memory: durable_rules 2.0.28 double-frees when a session is deleted before the consequents it
    queued have run. Run apart, with glibc's heap checks on, so a corruption is a crash here."""
    result = subprocess.run(
        [sys.executable, "-c", REFUSALS, refusal],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MALLOC_CHECK_": "3", "PYTHONFAULTHANDLER": "1"},
    )
    assert (result.returncode, result.stdout.strip()) == (0, "refusals-ok"), result.stderr[-3000:]


def test_an_exception_swallowed_by_the_engine_is_an_error(rule_set, monkeypatch):
    """durable_rules swallows what a consequent raises (the state it returns carries it): the adapter must
    say so rather than let the change pass. Reading a fact inside the engine is made to fail."""
    engine = DurableRulesEngine(rule_set)

    def broken(self: Any, key: str) -> Any:
        raise LookupError(f"cannot read {key}")

    monkeypatch.setattr(durable_engine.Content, "__getitem__", broken)
    with pytest.raises(RulesEngineError, match=r"a consequent raised: .*cannot read index"):
        engine.evaluate(request([ch("stock.US", "open")]), use_memo=False)
    monkeypatch.undo()
    assert_no_session(engine)
    assert verdict_ids(engine, [ch("stock.US", "open")], current={}, use_memo=False) == [None]


def test_a_verdict_the_adapter_does_not_know_is_an_error(rule_set, monkeypatch):
    engine = DurableRulesEngine(rule_set)
    monkeypatch.delitem(engine._compiled.rule_of, "type-in-catalog#0")
    with pytest.raises(RulesEngineError, match="unexpected verdict 'type-in-catalog#0' for change 0"):
        engine.evaluate(request([ch("stock.XX", "open")]), use_memo=False)
    assert_no_session(engine)


def test_a_change_the_engine_did_not_see_is_an_error(rule_set, monkeypatch):
    """Every change must reach the pass rule once: a record the engine does not judge as a change is caught."""
    engine = DurableRulesEngine(rule_set)
    _with_records(engine, monkeypatch, lambda records: [records[0], {**records[1], "t": "r"}])
    with pytest.raises(RulesEngineError, match="2 changes judged, 1 seen by the engine"):
        engine.evaluate(request([ch("stock.US", "open"), ch("stock.HK", "open")]), use_memo=False)
    assert_no_session(engine)


@pytest.fixture(scope="module")
def broker() -> DurableRulesEngine:
    return DurableRulesEngine(load_rule_set(BROKER_POLICIES))


@pytest.mark.parametrize(
    "hostile",
    ["\ud800", "CN\ud800", "\x00", "CN\x00", "\x00CN", "C" * 60 * 1024, "CN" + "x" * 60 * 1024],
    ids=["lone-surrogate", "cn-then-surrogate", "nul", "cn-then-nul", "nul-then-cn", "60KB", "cn-then-60KB"],
)
def test_hostile_attributes_and_tenant_are_only_themselves(broker, hostile):
    """Context facts go through the same escaping: a value that merely starts with CN is not CN."""
    northbound = [ch("stock.SH", "open")]
    for use_memo in (True, False, True):
        opened = decide(
            broker,
            request(northbound, attributes={"residency": hostile, "account_type": hostile}, tenant=hostile),
            use_memo=use_memo,
        )
        assert opened.accepted, opened
        shortsell = decide(broker, request([ch("shortsell.US", "open")], attributes={"account_type": hostile}))
        assert shortsell.denial is not None and shortsell.denial.rule.id == "shortsell-margin-only"
        cn = decide(broker, request(northbound, attributes={"residency": "CN"}, tenant=hostile), use_memo=use_memo)
        assert cn.denial is not None and cn.denial.rule.id == "no-northbound-for-cn-residents"
    assert_no_session(broker)


def test_facts_no_rule_joins_are_still_handled(broker):
    """The engine raises on a fact no pattern matches: context and permission facts that no policy reads for
    this change (open account.trade and va.OSL, an attribute no rule tests) are taken by the sinks."""
    stored = {"account.trade": "open", "va.OSL": "open", "trade.fix": "open"}
    for use_memo in (True, False):
        decision = decide(
            broker,
            request([ch("account.exchange", "open")], stored=stored, attributes={"investor_class": "retail"}),
            use_memo=use_memo,
        )
        assert decision.accepted and decision.held == (frozenset(),)
    assert_no_session(broker)
