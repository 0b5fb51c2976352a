"""`applies_to` on a policy (SPEC §7c): holding (the default) or opening, linted at its key; validations have
none."""

from __future__ import annotations

from app.rules.language.loader import load_rule_set
from app.rules.language.parser import load_rules
from tests.rules.language.test_schema import POLICY, VALIDATION, problems_of
from tests.rules.support import BROKER_POLICIES


def _policy(extra: str) -> tuple[str, ...]:
    rules, problems = load_rules((POLICY + extra).encode(), "f.yaml", policy=True, seen=set(), attributes={})
    assert [p for p in problems if p.is_error] == []
    return tuple(r.applies_to for r in rules)


def test_a_policy_holds_by_default_and_may_say_opening():
    assert _policy("") == ("holding",)
    assert _policy("    applies_to: opening\n") == ("opening",)
    assert _policy("    applies_to: holding\n") == ("holding",)


def test_another_value_is_reported_at_the_key():
    assert problems_of(POLICY + "    applies_to: always\n", policy=True) == [
        "f.yaml:6:5: no-us: 'applies_to' is one of holding, opening"
    ]


def test_a_validation_has_no_applies_to():
    assert problems_of(VALIDATION + "    applies_to: opening\n", policy=False) == [
        "f.yaml:8:5: type-required: unknown key 'applies_to' (only policies have it)"
    ]


def test_the_broker_policies_mark_their_freezes_opening():
    rule_set = load_rule_set(BROKER_POLICIES)
    opening = [r.id for r in rule_set.rules if r.applies_to == "opening"]
    assert opening == ["withdraw-freeze", "deposit-freeze-2025"]
