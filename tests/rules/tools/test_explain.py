"""explain(): every rule's verdict per change, the facts it read, and the envelope the caller gets (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.rules.runtime.decision import decide
from app.rules.runtime.engine import DurableRulesEngine
from app.rules.tools.explain.explanation import Explanation, Verdict, explain
from app.rules.tools.explain.render import as_json, text
from tests.rules.support import VALIDATION_IDS, ch, engine_for, request

POLICIES = """
policies:
  - id: options-need-stock
    description: Options need stock on the same market, now or in the same request.
    when:
      change: {product: options, permission_status: open}
      permission: "stock.{market}"
      after: close
    message: "opening options needs stock.{market} open"
  - id: shortsell-margin-only
    description: Margin accounts only.
    when:
      change: {product: shortsell, permission_status: open}
      not: {account: {account_type: margin}}
    message: short selling needs a margin account
  - id: sg-no-ipo
    description: One tenant only.
    when:
      tenant: sg_mexc
      change: {product: ipo, permission_status: open}
    message: "no IPO for {tenant}"
  - id: otc-warning
    description: A reminder.
    enforcement: warn
    when: {change: {product: otc, permission_status: open}}
    message: "collect the OTC disclosure for otc.{market}"
  - id: grey-watch
    description: Watched.
    enforcement: dryrun
    when: {change: {product: stockgrey, permission_status: open}}
    message: grey market
  - id: old-freeze
    description: Expired.
    from: 2020-01-01T00:00:00Z
    until: 2020-02-01T00:00:00Z
    when: {change: {permission_status: open}}
    message: frozen
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DurableRulesEngine:
    return engine_for(tmp_path_factory.mktemp("explain"), POLICIES)


def _verdicts(explanation: Explanation, index: int) -> dict[str, Verdict]:
    return {r.rule_id: r.verdict for r in explanation.changes[index].rules}


def _read(explanation: Explanation, index: int, rule_id: str) -> dict[str, str]:
    rule = next(r for r in explanation.changes[index].rules if r.rule_id == rule_id)
    return {f.name: f.value for f in rule.facts}


def test_every_kind_of_verdict_with_the_answer_the_caller_gets(engine):
    changes = [ch("otc.US", "open"), ch("stockgrey.HK", "open"), ch("options.JP", "open"), ch("stock.US", "open")]
    explanation = explain(engine, request(changes, stored={"stock.HK": "open"}))
    first = _verdicts(explanation, 0)
    assert first["otc-warning"] is Verdict.WARNS
    assert first["old-freeze"] is Verdict.OUTSIDE_WINDOW
    assert first["options-need-stock"] is Verdict.DOES_NOT_HOLD
    assert all(first[v] is Verdict.DOES_NOT_HOLD for v in VALIDATION_IDS)
    assert _verdicts(explanation, 1)["grey-watch"] is Verdict.DRYRUN
    third = _verdicts(explanation, 2)
    assert third["options-need-stock"] is Verdict.DECIDES
    assert {third[r] for r in ("shortsell-margin-only", "otc-warning", "old-freeze")} == {Verdict.NOT_REACHED_RULE}
    fourth = explanation.changes[3].rules
    assert {r.verdict for r in fourth} == {Verdict.NOT_REACHED_CHANGE}
    assert explanation.answer.code == 400106
    assert explanation.answer.message == "changes[2].permission_type 'options.JP': opening options needs stock.JP open"
    assert explanation.answer.data == {"failure_index": 2, "rule_id": "options-need-stock"}
    assert explanation.answer.dryrun_by == ("grey-watch",)


def test_the_answer_is_the_one_decide_gives(engine):
    """Explain judges without the memo; its verdicts and answer are those of the service's path."""
    decision_input = request([ch("options.US", "open"), ch("stock.US", "open"), ch("otc.HK", "open")])
    explanation = explain(engine, decision_input)
    decision = decide(engine, decision_input)
    assert decision.accepted and explanation.answer.code == 0
    assert explanation.answer.message == "success"
    assert explanation.answer.data == {
        "failure_index": 0,
        "warnings": [{"index": 2, "rule_id": "otc-warning", "message": decision.warnings[0].message}],
    }
    assert decision.warnings[0].message == "changes[2].permission_type 'otc.HK': collect the OTC disclosure for otc.HK"
    for index, held in enumerate(decision.held):
        assert {r.rule_id for r in explanation.changes[index].rules if r.holds} == held


def test_a_relation_shows_the_permission_it_names_before_and_after(engine):
    explanation = explain(
        engine, request([ch("options.US", "open"), ch("stock.US", "open")], stored={"stock.HK": "open"})
    )
    read = _read(explanation, 0, "options-need-stock")
    assert read["permission stock.US (stock.{market})"] == "close before, open after"
    assert read["change.product"] == "options" and read["change.permission_status"] == "open"
    assert _verdicts(explanation, 0)["options-need-stock"] is Verdict.DOES_NOT_HOLD
    alone = explain(engine, request([ch("options.HK", "open")], stored={"stock.HK": "open"}))
    assert _read(alone, 0, "options-need-stock")["permission stock.HK (stock.{market})"] == "open before, open after"
    # a change without a market: the relation names nothing
    account = explain(engine, request([ch("account.trade", "open")]))
    assert _read(account, 0, "options-need-stock")["permission stock.{market}"] == (
        "this change has no market: the test cannot hold"
    )


def test_the_account_tenant_time_and_change_facts_are_shown(engine):
    moment = datetime(2020, 1, 10, tzinfo=UTC)
    explanation = explain(
        engine,
        request([ch("shortsell.US", "open")], attributes={"account_type": "cash"}, tenant="sg_mexc", at=moment),
    )
    assert _read(explanation, 0, "shortsell-margin-only")["account.account_type"] == "cash"
    assert _read(explanation, 0, "sg-no-ipo")["tenant"] == "sg_mexc"
    assert _read(explanation, 0, "old-freeze")["time"].startswith("2020-01-10T00:00:00+00:00 (in force from 2020-01-01")
    no_type = explain(engine, request([ch("shortsell.US", "open")]))
    assert _read(no_type, 0, "shortsell-margin-only")["account.account_type"] == "(not set)"
    values = explanation.changes[0].values
    assert values["product"] == "shortsell" and values["market"] == "US"
    assert values["in_catalog"] is True and values["enabled_for_tenant"] is True
    assert values["current_status"] == "close" and values["named_earlier"] is False
    assert explanation.tenant_id == "sg_mexc" and explanation.attributes == {"account_type": "cash"}


def test_text_and_json_carry_the_same_verdicts(engine):
    explanation = explain(engine, request([ch("stock.US", "open"), ch("stock.US", "open")]))
    document = as_json(explanation)
    assert document["answer"]["data"] == {"failure_index": 1, "rule_id": "no-duplicate-type"}
    second = {r["rule_id"]: r for r in document["changes"][1]["rules"]}
    assert second["no-duplicate-type"]["verdict"] == "decides"
    assert second["no-duplicate-type"]["read"] == {"change.named_earlier": "true"}
    assert second["must-change-state"]["verdict"] == "not_reached_rule"
    lines = text(explanation, verbose=True)
    assert "  facts: " in "\n".join(lines) and "earlier_index=0" in "\n".join(lines)
    assert lines[-2] == "message: changes[1].permission_type 'stock.US': is already named by changes[0]"
