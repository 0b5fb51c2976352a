"""DecisionInput.of: the one builder of what the rules see, for the service, the cases, recorded decisions,
explain and the input space's representatives."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.rules.runtime.decision_input import DecisionInput
from tests.support import PROJECT_ROOT

APP = PROJECT_ROOT / "app"
BUILDER = APP / "rules" / "runtime" / "decision_input.py"


def test_the_builder_is_the_only_place_in_app_that_constructs_a_decision_input():
    constructing = re.compile(r"\bDecisionInput\(")
    found = sorted(
        str(path.relative_to(PROJECT_ROOT))
        for path in APP.rglob("*.py")
        if path != BUILDER and constructing.search(path.read_text(encoding="utf-8"))
    )
    assert found == []


def test_the_builder_keeps_what_the_rules_read_and_copies_the_rest():
    stored, attributes = {"stock.US": "open"}, {"residency": "SG"}
    built = DecisionInput.of(
        tenant_id="t1",
        patterns=["stock.*"],
        changes=[{"permission_type": "stock.HK", "permission_status": "open", "comment": "x"}, "not an object"],
        stored=stored,
        account_status="deregistered",
        attributes=attributes,
        at=datetime(2026, 1, 2, 3, 4, 5),  # no zone: UTC, as SQLite hands a recorded time back
    )
    assert built == DecisionInput(
        "t1",
        ("stock.*",),
        ({"permission_type": "stock.HK", "permission_status": "open"}, "not an object"),
        {"stock.US": "open"},
        "deregistered",
        {"residency": "SG"},
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    stored["stock.HK"], attributes["residency"] = "open", "HK"  # the caller's later edits reach nothing
    assert (built.stored, built.attributes) == ({"stock.US": "open"}, {"residency": "SG"})


def test_the_builder_defaults_to_an_active_account_with_nothing_stored_judged_now():
    before = datetime.now(UTC)
    built = DecisionInput.of(tenant_id="t1", patterns=("*",), changes=())
    assert (built.stored, built.attributes, built.account_status) == ({}, {}, "active")
    assert before <= built.at <= datetime.now(UTC) + timedelta(seconds=1)
