"""The engine path (memo bypassed) hands a request's facts to durable_rules once, whatever its size."""

from __future__ import annotations

from typing import Any

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from tests.support import SHIPPED_RULES


@pytest.mark.parametrize("size", [1, 3, 20])
def test_one_request_is_one_engine_session(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    engine = DurableRulesEngine(load_rule_set(SHIPPED_RULES))
    real = engine._assert_facts  # where the adapter hands a session's facts to durable_rules
    posted: list[int] = []

    def counted(events: list[dict[str, Any]]) -> Any:
        posted.append(len(events))
        return real(events)

    monkeypatch.setattr(engine, "_assert_facts", counted)
    values = engine.rule_set.catalog.values[:size]
    changes = tuple({"permission_type": v, "permission_status": "open"} for v in values)
    held = engine.evaluate(DecisionInput("t", ("*",), changes), use_memo=False).held
    assert held == (frozenset(),) * size
    assert posted == [size]  # one session with every change, not one per change (quadratic in the batch)


def test_a_full_memo_still_answers_a_request_whose_new_changes_evict_its_remembered_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("app.rules.runtime.engine.MEMO_SIZE", 3)
    engine = DurableRulesEngine(load_rule_set(SHIPPED_RULES))

    def request(*values: str) -> DecisionInput:
        return DecisionInput("t", ("*",), tuple({"permission_type": v, "permission_status": "open"} for v in values))

    for value in ("stock.US", "stock.HK", "stock.SG"):  # the memo is full; stock.US is its oldest entry
        engine.evaluate(request(value))
    # stock.JP is new: remembering it evicts stock.US, which this same request needs from the memo next.
    held = engine.evaluate(request("stock.JP", "stock.US")).held
    assert held == (frozenset(), frozenset())
    assert engine.memo_hits == 1
