"""answer_of(): the one place a decision becomes the caller's answer (code, message, failure_index, rule_id,
data.warnings) and its dryrun hits; the service, the HTTP body, cases, impact and explain all read it."""

from __future__ import annotations

import pytest

from app.errors import ChangeRejected, Code
from app.rules.runtime.answer import answer_of
from app.rules.runtime.engine import DurableRulesEngine
from tests.rules.support import ch, decision, engine_for

POLICIES = """\
policies:
  - id: warn-otc
    description: OTC needs a disclosure.
    enforcement: warn
    when: {change: {product: otc, permission_status: open}}
    message: "collect the disclosure for otc.{market}"

  - id: watch-grey
    description: Grey market would be refused.
    enforcement: dryrun
    when: {change: {product: stockgrey, permission_status: open}}
    message: "grey market {market} is not offered"

  - id: deny-ipo
    description: IPO closed on JP.
    when: {change: {product: ipo, market: JP, permission_status: open}}
    message: "IPO subscriptions on {market} are not offered"
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DurableRulesEngine:
    return engine_for(tmp_path_factory.mktemp("answer"), POLICIES)


def test_an_accepted_request_answers_success_with_failure_index_0(engine):
    answer = answer_of(decision(engine, [ch("stock.US", "open")]))
    assert (answer.code, answer.code_name, answer.message) == (0, "SUCCESS", "success")
    assert (answer.failure_index, answer.rule_id, answer.accepted) == (0, None, True)
    assert answer.data == {"failure_index": 0}  # no warnings key when no warn policy held
    assert (answer.warned_by, answer.dryrun_by, answer.refusal()) == ((), (), None)


def test_a_denied_request_answers_the_rules_outcome_at_its_change(engine):
    answer = answer_of(decision(engine, [ch("otc.SG", "open"), ch("ipo.JP", "open")]))
    assert (answer.code, answer.code_name) == (int(Code.PERMISSION_POLICY_DENIED), "PERMISSION_POLICY_DENIED")
    assert answer.message == "changes[1].permission_type 'ipo.JP': IPO subscriptions on JP are not offered"
    assert (answer.failure_index, answer.rule_id, answer.accepted) == (1, "deny-ipo", False)
    assert answer.data == {"failure_index": 1, "rule_id": "deny-ipo"}  # the caller reads no warnings
    assert answer.warned_by == ("warn-otc",)  # but the warning that held is kept (the decision record)
    refusal = answer.refusal()
    assert isinstance(refusal, ChangeRejected)
    assert (refusal.code, refusal.message, refusal.failure_index, refusal.rule_id) == (
        Code.PERMISSION_POLICY_DENIED,
        answer.message,
        1,
        "deny-ipo",
    )


def test_a_validation_refusal_answers_its_own_code(engine):
    answer = answer_of(decision(engine, [ch("stock.US", "open")], stored={"stock.US": "open"}))
    assert (answer.code_name, answer.failure_index, answer.rule_id) == ("NO_STATE_CHANGE", 0, "must-change-state")


def test_warnings_are_the_data_of_an_accepted_request_in_order(engine):
    answer = answer_of(decision(engine, [ch("stock.US", "open"), ch("otc.SG", "open")]))
    assert answer.accepted
    assert answer.data == {
        "failure_index": 0,
        "warnings": [
            {
                "index": 1,
                "rule_id": "warn-otc",
                "message": "changes[1].permission_type 'otc.SG': collect the disclosure for otc.SG",
            }
        ],
    }
    assert list(answer.data) == ["failure_index", "warnings"]  # the body's key order
    assert answer.warned_by == ("warn-otc",)


def test_dryrun_hits_are_kept_and_never_shown(engine):
    answer = answer_of(decision(engine, [ch("stockgrey.HK", "open")]))
    assert answer.accepted and answer.data == {"failure_index": 0}
    assert answer.dryrun_by == ("watch-grey",)
    denied = answer_of(decision(engine, [ch("stockgrey.HK", "open"), ch("ipo.JP", "open")]))
    assert denied.dryrun_by == ("watch-grey",) and "watch-grey" not in str(denied.data)
