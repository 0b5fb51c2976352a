"""What a failing case says (`permctl rules test`, the reload gate, JUnit): the expected and the actual answer as
a person reads them, with no Python reprs (no None, no ['a']) and single quotes around every value."""

from __future__ import annotations

import pytest

from app.rules.tools.cases import Case, CaseResult, Expected, Outcome


def _failing(expected: Expected, outcome: Outcome) -> list[str]:
    case = Case("planted", "rules/cases/planted.yaml", 1, ("*",), {}, [], expected)
    return CaseResult(case, outcome).mismatches


DENIED = Outcome("PERMISSION_POLICY_DENIED", 1, "otc-freeze", "changes[1].permission_type 'otc.SG': frozen")


@pytest.mark.parametrize(
    ("expected", "outcome", "says"),
    [
        (
            Expected("SUCCESS"),
            Outcome("PERMISSION_POLICY_DENIED", 0, "otc-freeze"),
            "expected success, got PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze'",
        ),
        (
            Expected("PERMISSION_POLICY_DENIED", 0, "otc-freeze"),
            Outcome("SUCCESS"),
            "expected PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze', got success",
        ),
        (
            Expected("PERMISSION_POLICY_DENIED", 0, "otc-freeze"),
            DENIED,
            "expected PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze', "
            "got PERMISSION_POLICY_DENIED (400106) at change 1 by 'otc-freeze'",
        ),
        (
            Expected("NO_STATE_CHANGE", 0, "must-change-state"),
            Outcome("INVALID_REQUEST", 0, None, "changes: Not a valid list."),
            "expected NO_STATE_CHANGE (400103) at change 0 by 'must-change-state', got INVALID_REQUEST (400001)",
        ),
        (
            Expected("INVALID_REQUEST", 2),
            Outcome("INVALID_REQUEST", 0, None, "changes: Not a valid list."),
            "expected INVALID_REQUEST (400001) at change 2, got INVALID_REQUEST (400001)",
        ),
    ],
)
def test_a_different_answer_names_both_without_none(expected: Expected, outcome: Outcome, says: str):
    assert _failing(expected, outcome) == [says]


def test_a_different_message_is_quoted_in_single_quotes_whatever_it_holds():
    expected = Expected("PERMISSION_POLICY_DENIED", 1, "otc-freeze", 'changes[1].permission_type "otc.SG": frozen\n')
    assert _failing(expected, DENIED) == [
        "expected message 'changes[1].permission_type \"otc.SG\": frozen\\n', "
        "got 'changes[1].permission_type 'otc.SG': frozen'"
    ]


def test_different_warnings_are_listed_in_single_quotes():
    assert _failing(Expected("SUCCESS", warnings=()), Outcome("SUCCESS", warnings=("us-reminder", "otc-warning"))) == [
        "expected no warnings, got warnings 'us-reminder', 'otc-warning'"
    ]
    assert _failing(Expected("SUCCESS", warnings=("us-reminder",)), Outcome("SUCCESS")) == [
        "expected warnings 'us-reminder', got no warnings"
    ]


def test_a_matching_case_says_nothing():
    assert _failing(Expected("PERMISSION_POLICY_DENIED", 1, "otc-freeze", DENIED.message), DENIED) == []
