"""decide(): enforcement deny / warn / dryrun in the order of SPEC §3.2, messages and their placeholders, and a
recorded DecisionInput that replays to the same Decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from app.errors import Code
from app.rules.runtime.answer import answer_of
from app.rules.runtime.decision import Decision, decide
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.runtime.record import DecisionRecord
from tests.rules.support import ch, engine_for, request

SHOWN = ("permission_type", "permission_status", "current_status", "product", "market", "group", "name", "tenant")
PLACEHOLDERS = "|".join(f"{{{name}}}" for name in (*SHOWN, "residency", "earlier_index"))
POLICIES = """\
policies:
  - id: warn-otc
    description: OTC needs a disclosure.
    enforcement: warn
    when: {change: {product: otc, permission_status: open}}
    message: "collect the disclosure for otc.{market} ({tenant})"

  - id: watch-grey
    description: Grey market would be refused.
    enforcement: dryrun
    when: {change: {product: stockgrey, permission_status: open}}
    message: "grey market {market} is not offered"

  - id: warn-ipo-first
    description: A warning before the denial of the same change.
    enforcement: warn
    when: {change: {product: ipo, permission_status: open}}
    message: IPO risk

  - id: deny-ipo
    description: IPO closed on JP and DE.
    when: {change: {product: ipo, market: [JP, DE], permission_status: open}}
    message: "IPO subscriptions on {market} are not offered to {residency} residents of {tenant}"

  - id: warn-ipo-after
    description: A warning after the denial of the same change.
    enforcement: warn
    when: {change: {product: ipo, permission_status: open}}
    message: never seen when deny-ipo holds

  - id: deny-va
    description: Virtual assets for professionals; the message points at the status.
    field: permission_status
    when:
      change: {group: va, permission_status: open}
      not: {account: {investor_class: professional}}
    message: "needs a professional investor, not {investor_class}"

  - id: watch-placeholders
    description: Every placeholder a message can show.
    enforcement: dryrun
    when: {change: {permission_type: [stock.US, account.trade, trade.fix]}}
    message: "PLACEHOLDERS"

  - id: deny-withdraw-window
    description: A scheduled freeze.
    from: 2026-01-01T00:00:00Z
    until: 2026-02-01T00:00:00Z
    when: {change: {permission_type: account.withdraw, permission_status: open}}
    message: frozen in January 2026
""".replace("PLACEHOLDERS", PLACEHOLDERS)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DurableRulesEngine:
    return engine_for(tmp_path_factory.mktemp("decision"), POLICIES)


def hits(found: tuple) -> list[tuple[int, str]]:
    return [(hit.index, hit.rule.id) for hit in found]


def denial(decision: Decision) -> tuple[int, str] | None:
    return None if decision.denial is None else (decision.denial.index, decision.denial.rule.id)


def test_the_first_deny_stops_and_what_held_before_it_is_collected(engine):
    changes = [ch("otc.SG", "open"), ch("stockgrey.HK", "open"), ch("ipo.JP", "open"), ch("otc.US", "open")]
    decision = decide(engine, request(changes))
    assert denial(decision) == (2, "deny-ipo")
    # warn and dryrun hits of earlier changes, and of earlier rules of the denied change, are kept;
    # the rules after the denial (same change, later changes) are never reached.
    assert hits(decision.warnings) == [(0, "warn-otc"), (2, "warn-ipo-first")]
    assert hits(decision.dryruns) == [(1, "watch-grey")]
    # The engine still judged every change: held reports every rule whose condition held.
    assert {"deny-ipo", "warn-ipo-first", "warn-ipo-after"} <= decision.held[2]
    assert decision.held[3] == {"warn-otc"}
    assert not decision.accepted and decision.rule_set_version == engine.version


def test_warn_and_dryrun_never_stop_a_request(engine):
    changes = [ch("otc.SG", "open"), ch("stockgrey.HK", "open"), ch("ipo.US", "open"), ch("otc.US", "open")]
    decision = decide(engine, request(changes, tenant="sg_mexc"))
    assert decision.accepted and decision.denial is None
    assert hits(decision.warnings) == [(0, "warn-otc"), (2, "warn-ipo-first"), (2, "warn-ipo-after"), (3, "warn-otc")]
    assert decision.warnings[0].as_warning() == {
        "index": 0,
        "rule_id": "warn-otc",
        "message": "changes[0].permission_type 'otc.SG': collect the disclosure for otc.SG (sg_mexc)",
    }
    assert hits(decision.dryruns) == [(1, "watch-grey")]
    assert decision.dryruns[0].message == "changes[1].permission_type 'stockgrey.HK': grey market HK is not offered"


def test_closing_is_not_opening(engine):
    changes = [ch("ipo.JP", "close"), ch("otc.SG", "close"), ch("stockgrey.HK", "close"), ch("va.OSL", "close")]
    stored = {"ipo.JP": "open", "otc.SG": "open", "stockgrey.HK": "open", "va.OSL": "open"}
    decision = decide(engine, request(changes, stored=stored))
    assert decision.accepted and (decision.warnings, decision.dryruns) == ((), ())
    assert decision.held == (frozenset(),) * 4


def test_validations_come_first_within_a_change(engine):
    # ipo.JP is already open: the no-op validation reports it, and no policy of that change is reached.
    decision = decide(engine, request([ch("ipo.JP", "open")], stored={"ipo.JP": "open"}))
    assert denial(decision) == (0, "must-change-state")
    assert decision.warnings == ()
    assert {"must-change-state", "deny-ipo", "warn-ipo-first"} <= decision.held[0]
    # Not enabled for the tenant: the type validation reports it.
    disabled = decide(engine, request([ch("ipo.DE", "open")], patterns=("stock.*",)))
    assert denial(disabled) == (0, "type-enabled-for-tenant")


def test_the_first_failing_change_wins(engine):
    assert denial(decide(engine, request([ch("ipo.DE", "open"), ch("stock.XX", "open")]))) == (0, "deny-ipo")
    assert denial(decide(engine, request([ch("stock.XX", "open"), ch("ipo.DE", "open")]))) == (0, "type-in-catalog")
    later = decide(engine, request([ch("otc.SG", "open"), ch("va.OSL", "open"), ch("ipo.DE", "open")]))
    assert denial(later) == (1, "deny-va")
    assert hits(later.warnings) == [(0, "warn-otc")]


def test_a_denial_is_400106_with_the_rules_message(engine):
    decision = decide(engine, request([ch("stock.US", "open"), ch("ipo.DE", "open")], attributes={"residency": "SG"}))
    hit = decision.denial
    assert hit is not None
    assert hit.message == (
        "changes[1].permission_type 'ipo.DE': IPO subscriptions on DE are not offered to SG residents of t1"
    )
    error = answer_of(decision).refusal()  # what the service raises
    assert error is not None
    assert (error.code, error.http_status, error.failure_index, error.rule_id) == (
        Code.PERMISSION_POLICY_DENIED,
        400,
        1,
        "deny-ipo",
    )
    assert int(error.code) == 400106


def test_a_message_may_point_at_the_status(engine):
    hit = decide(engine, request([ch("va.HAS", "open")], attributes={"investor_class": "retail"})).denial
    assert hit is not None and hit.rule.id == "deny-va"
    assert hit.message == "changes[0].permission_status 'open': needs a professional investor, not retail"


@pytest.mark.parametrize(
    ("changes", "index", "shown"),
    [
        ([ch("stock.US", "open")], 0, "stock.US|open|close|stock|US|||t1|CN|0"),
        ([ch("stock.HK", "open"), ch("account.trade", "close")], 1, "account.trade|close|open|||account|trade|t1|CN|1"),
        (
            [ch("stock.HK", "open"), ch("stock.SG", "open"), ch("trade.fix", "open")],
            2,
            "trade.fix|open|close|||trade|fix|t1|CN|2",
        ),
    ],
    ids=["product-market", "group-name-no-market", "own-index"],
)
def test_message_placeholders(engine, changes, index, shown):
    decision = decide(engine, request(changes, stored={"account.trade": "open"}, attributes={"residency": "CN"}))
    found = [hit for hit in decision.dryruns if hit.rule.id == "watch-placeholders" and hit.index == index]
    assert [hit.message for hit in found] == [
        f"changes[{index}].permission_type '{changes[index]['permission_type']}': {shown}"
    ]


def test_an_unset_attribute_shows_nothing_and_a_long_one_is_cut(engine):
    unset = decide(engine, request([ch("va.OSL", "open")])).denial
    assert (
        unset is not None
        and unset.message == "changes[0].permission_status 'open': needs a professional investor, not "
    )
    long = decide(engine, request([ch("ipo.JP", "open")], attributes={"residency": "R" * 500})).denial
    assert long is not None
    cut = "R" * 80 + "…"
    assert (
        long.message
        == f"changes[0].permission_type 'ipo.JP': IPO subscriptions on JP are not offered to {cut} residents of t1"
    )


def test_a_window_decides_by_the_time_of_the_request(engine):
    withdraw = [ch("account.withdraw", "open")]
    assert decide(engine, request(withdraw, at=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))).accepted
    frozen = decide(engine, request(withdraw, at=datetime(2026, 1, 1, tzinfo=UTC)))
    assert denial(frozen) == (0, "deny-withdraw-window")
    assert frozen.denial.message == "changes[0].permission_type 'account.withdraw': frozen in January 2026"
    assert decide(engine, request(withdraw, at=datetime(2026, 2, 1, tzinfo=UTC))).accepted


def test_a_recorded_input_replays_to_the_same_decision(engine):
    original = request(
        [ch("otc.SG", "open"), ch("ipo.DE", "open")],
        stored={"stock.US": "open"},
        attributes={"residency": "SG"},
        tenant="sg_mexc",
        patterns=("otc.*", "ipo.*", "stock.*"),
        account_status="active",
        at=datetime(2026, 1, 15, 8, 30, tzinfo=UTC),
    )
    row = SimpleNamespace(  # as the decisions table keeps it (app/service/permissions.py) and impact reads it
        id=1,
        trace_id="t",
        tenant_id="sg_mexc",
        account_no="A",
        rule_set_version="v",
        created_at=original.at,
        changes=json.dumps(list(original.changes)),
        tenant_patterns=json.dumps(list(original.tenant_patterns)),
        account_state=json.dumps(dict(original.stored)),
        code=0,
        failure_index=0,
        rule_id=None,
        account_status="active",
        attributes=json.dumps(dict(original.attributes)),
        warned_by=None,
        dryrun_by=None,
        published_version=None,
    )
    replayed = DecisionRecord.of_row(row).decision_input()
    assert replayed == original
    first, again = decide(engine, original), decide(engine, replayed, use_memo=False)
    assert (denial(first), hits(first.warnings), first.denial.message) == (
        denial(again),
        hits(again.warnings),
        again.denial.message,
    )


def test_a_condition_of_64_alternatives_runs_as_one_policy(tmp_path):
    """The largest condition lint accepts: 64 durable rules of one policy, reported once."""
    anys = "".join(f"        - any: [{{change: {{market: US}}}}, {{tenant: t{i}}}]\n" for i in range(6))
    policies = f"policies:\n  - id: big\n    description: x\n    when:\n      all:\n{anys}    message: big\n"
    big = engine_for(tmp_path, policies)
    assert sum(1 for rule_id in big._compiled.rule_of.values() if rule_id == "big") == 64
    assert denial(decide(big, request([ch("stock.US", "open")]))) == (0, "big")
    assert decide(big, request([ch("stock.HK", "open")], tenant="t0")).accepted  # t0 satisfies one any only
    assert decide(big, request([ch("stock.HK", "open")])).held == (frozenset(),)
