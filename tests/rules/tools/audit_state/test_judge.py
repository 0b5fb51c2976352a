"""The state judge (app/rules/tools/audit_state/): each open permission judged through decide() as if opened now
in a request of its own, with the holding policies only; the report's order and CSV escaping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.tools.audit_state.judge import Holding, StateJudge, holding_rules
from app.rules.tools.audit_state.render import escaped
from app.rules.tools.audit_state.report import StateAudit
from tests.rules.support import BROKER_POLICIES

IN_THE_FREEZE = datetime(2026, 12, 6, tzinfo=UTC)
ALL = {"t": ("*",)}


@pytest.fixture(scope="module")
def judge():
    judge = StateJudge(load_rule_set(BROKER_POLICIES), at=IN_THE_FREEZE, patterns=ALL)
    yield judge
    judge.release()


def _denied(judge: StateJudge, *opened: str, **attributes: str) -> list[tuple[str, str]]:
    verdict = judge.judge(Holding("t", "A", tuple(sorted(opened)), attributes))
    return [(f.permission_type, f.rule_id) for f in verdict.violations]


def test_the_holding_set_keeps_only_holding_policies_under_its_own_version():
    rule_set = load_rule_set(BROKER_POLICIES)
    holding = holding_rules(rule_set)
    assert holding.version != rule_set.version
    assert all(r.is_policy for r in holding.rules)
    assert {r.id for r in rule_set.rules if r.is_policy} - {r.id for r in holding.rules} == {
        "withdraw-freeze",
        "deposit-freeze-2025",
    }


def test_a_prerequisite_held_satisfies_and_one_missing_is_a_violation(judge: StateJudge):
    assert _denied(judge, "options.HK", "stock.HK") == []
    assert _denied(judge, "options.HK", "stock.US") == [("options.HK", "options-need-stock")]


def test_attributes_decide_as_for_a_real_request(judge: StateJudge):
    assert _denied(judge, "stock.SH", residency="CN") == [("stock.SH", "no-northbound-for-cn-residents")]
    assert _denied(judge, "stock.SH", residency="SG") == []
    assert _denied(judge, "va.OSL", investor_class="retail") == [("va.OSL", "va-professional-only")]


def test_a_freeze_in_force_binds_no_holder(judge: StateJudge):
    assert _denied(judge, "account.withdraw") == []


def test_each_permission_is_judged_opening_so_a_rule_about_closes_finds_nothing(judge: StateJudge):
    # stock.HK is held open while options.HK is open: stock-close-needs-options-closed is about closes only.
    assert _denied(judge, "stock.HK", "options.HK") == []


def test_a_distinct_state_is_judged_once():
    judge = StateJudge(load_rule_set(BROKER_POLICIES), at=IN_THE_FREEZE, patterns=ALL)
    try:
        first = judge.judge(Holding("t", "A", ("shortsell.US", "stock.US"), {"account_type": "cash"}))
        again = judge.judge(Holding("t", "B", ("shortsell.US", "stock.US"), {"account_type": "cash"}))
        other = judge.judge(Holding("t", "C", ("shortsell.US", "stock.US"), {"account_type": "margin"}))
    finally:
        judge.release()
    assert first is again and first.violations and other.violations == () and judge.states_judged == 2


def test_the_report_orders_by_tenant_account_permission_and_rule(judge: StateJudge):
    audit = StateAudit(judge.rule_set, IN_THE_FREEZE)
    for tenant, account in (("b", "2"), ("a", "9"), ("a", "10")):
        holding = Holding(tenant, account, ("shortsell.US",), {"account_type": "cash"})
        audit.add(holding, judge.judge(Holding("t", "x", holding.open_permissions, holding.attributes)))
    doc = audit.document()
    assert [(v["tenant"], v["account_no"]) for v in doc["violations"]] == [("a", "10"), ("a", "9"), ("b", "2")]
    assert doc["by_tenant"] == {"a": 2, "b": 1} and doc["judged_at"] == "2026-12-06T00:00:00Z"


def test_a_count_breach_is_reported_once_per_account_saying_how_many_to_close(judge: StateJudge):
    """options-at-most-3-markets: an account holding options on 5 markets (stock on each) breaches it once."""
    markets = ("HK", "US", "SG", "JP", "UK")
    held = tuple(sorted(f"{p}.{m}" for p in ("options", "stock") for m in markets))
    audit = StateAudit(judge.rule_set, IN_THE_FREEZE)
    audit.add(Holding("t", "A", held, {}), judge.judge(Holding("t", "A", held, {})))
    [violation] = audit.document()["violations"]
    assert violation["rule_id"] == "options-at-most-3-markets"
    assert violation["permission_type"] == ", ".join(sorted(f"options.{m}" for m in markets))
    assert violation["message"].startswith("5 of options.* open where at most 3 may be: close 2 of them (")
    three = tuple(sorted(f"{p}.{m}" for p in ("options", "stock") for m in markets[:3]))
    assert _denied(judge, *three) == []


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("stock.US", "stock.US"),
        ("a=b", "a=b"),
    ],
)
def test_a_csv_cell_a_spreadsheet_would_run_is_quoted(cell: str, shown: str):
    assert escaped(cell) == shown
