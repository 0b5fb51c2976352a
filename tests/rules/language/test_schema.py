"""The declared shape of rule-file entries (app/rules/language/schema.py): each mistake of keys and value types
is reported once, at the line and column of the key it is about (at the entry for a missing key), in the order
unknown keys, missing keys, then values as declared."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.rules.language.parser import load_rules
from app.rules.language.schema import (
    POLICY_ENTRY,
    POLICY_OUTCOME,
    VALIDATION_ENTRY,
    Moment,
    OneOf,
    Text,
)

VALIDATION = """\
rules:
  - id: type-required
    description: A change names its type.
    when: {change: {permission_type: {is: missing}}}
    message: permission_type is required
    field: permission_type
    outcome: INVALID_PERMISSION_TYPE
"""

POLICY = """\
policies:
  - id: no-us
    description: No US stock.
    when: {change: {permission_type: stock.US}}
    message: not offered
"""


def problems_of(text: str, *, policy: bool) -> list[str]:
    rules, problems = load_rules(text.encode(), "f.yaml", policy=policy, seen=set(), attributes={})
    assert (rules == ()) == bool([p for p in problems if p.is_error])
    return [str(p) for p in problems]


def test_entries_as_declared_read_clean():
    assert problems_of(VALIDATION, policy=False) == []
    assert problems_of(POLICY, policy=True) == []


def test_an_unknown_key_is_reported_at_the_key():
    text = VALIDATION + "    colour: red\n"
    assert problems_of(text, policy=False) == ["f.yaml:8:5: type-required: unknown key 'colour'"]


def test_a_key_only_policies_have_says_so_and_its_value_is_still_read():
    text = VALIDATION + "    until: someday\n"
    assert problems_of(text, policy=False) == [
        "f.yaml:8:5: type-required: unknown key 'until' (only policies have it)",
        "f.yaml:8:5: type-required: 'until' is a UTC time like 2026-01-01T00:00:00Z or a date like 2026-01-01",
    ]


def test_a_missing_key_is_reported_at_the_entry():
    text = VALIDATION.replace("    message: permission_type is required\n", "")
    assert problems_of(text, policy=False) == ["f.yaml:2:5: type-required: missing key 'message'"]


@pytest.mark.parametrize(
    ("old", "new", "at", "says"),
    [
        ("description: A change names its type.", "description: 5", "3:5", "'description' must be non-empty text"),
        ("message: permission_type is required", "message: ''", "5:5", "'message' must be non-empty text"),
        (
            "field: permission_type",
            "field: [permission_type]",
            "6:5",
            "'field' is permission_type or permission_status",
        ),
        (
            "outcome: INVALID_PERMISSION_TYPE",
            "outcome: 7",
            "7:5",
            "unknown outcome 7 (use one of INVALID_PERMISSION_TYPE, INVALID_PERMISSION_STATUS, "
            "DUPLICATE_PERMISSION_TYPE, NO_STATE_CHANGE)",
        ),
        ("id: type-required", "id: Type_Required", "2:5", "'id' must be lower-case letters, digits and dashes"),
    ],
)
def test_a_value_of_the_wrong_type_is_reported_at_its_key(old, new, at, says):
    text = VALIDATION.replace(old, new)
    rule_id = "Type_Required" if "Type_Required" in new else "type-required"
    assert problems_of(text, policy=False) == [f"f.yaml:{at}: {rule_id}: {says}"]


def test_an_entry_without_a_text_id_is_named_by_its_place():
    text = POLICY.replace("id: no-us", "id: [no-us]")
    assert problems_of(text, policy=True) == [
        "f.yaml:2:5: policies[0]: 'id' must be lower-case letters, digits and dashes"
    ]


def test_mistakes_come_unknown_keys_first_then_missing_keys_then_values_in_declared_order():
    text = (
        POLICY.replace("    message: not offered\n", "") + "    enforcement: block\n    colour: red\n    from: soon\n"
    )
    assert problems_of(text, policy=True) == [
        "f.yaml:6:5: no-us: unknown key 'colour'",
        "f.yaml:2:5: no-us: missing key 'message'",
        "f.yaml:5:5: no-us: 'enforcement' is one of deny, warn, dryrun",
        "f.yaml:7:5: no-us: 'from' is a UTC time like 2026-01-01T00:00:00Z or a date like 2026-01-01",
    ]


def test_a_policy_outcome_may_only_name_the_policy_outcome():
    text = POLICY + "    outcome: NO_STATE_CHANGE\n"
    assert problems_of(text, policy=True) == [
        f"f.yaml:6:5: no-us: a policy's outcome is always {POLICY_OUTCOME}; NO_STATE_CHANGE is a validation's "
        "(validation.yaml)"
    ]


def test_each_mistake_of_an_entry_in_flow_style_is_at_its_own_column():
    entry = "  - {id: no-us, description: '', when: {tenant: t1}, message: m, enforcement: 1}"
    at = {key: entry.index(f"{key}:") + 1 for key in ("description", "enforcement")}
    assert problems_of(f"policies:\n{entry}\n", policy=True) == [
        f"f.yaml:2:{at['description']}: no-us: 'description' must be non-empty text",
        f"f.yaml:2:{at['enforcement']}: no-us: 'enforcement' is one of deny, warn, dryrun",
    ]


def test_schemas_declare_required_keys_in_the_order_they_are_reported():
    assert VALIDATION_ENTRY.required == ("id", "description", "when", "message", "field", "outcome")
    assert POLICY_ENTRY.required == ("id", "description", "when", "message")
    entry = {"id": "x", "description": "d", "when": {}, "message": "m", "colour": 1}
    assert list(POLICY_ENTRY.key_mistakes(entry)) == [("unknown key 'colour'", "colour")]
    assert list(VALIDATION_ENTRY.key_mistakes(entry)) == [
        ("unknown key 'colour'", "colour"),
        ("missing key 'field'", None),
        ("missing key 'outcome'", None),
    ]


def test_absent_values_take_their_defaults():
    values, mistakes = POLICY_ENTRY.read_values({"description": "d", "message": "m"})
    assert mistakes == []
    assert values == {
        "description": "d",
        "message": "m",
        "field": "permission_type",
        "outcome": POLICY_OUTCOME,
        "enforcement": "deny",
        "from": None,
        "until": None,
        "applies_to": "holding",
    }


def test_value_types():
    assert Text().read({"k": "  "}, "k", {}) == ("  ", "'k' must be non-empty text")
    assert Text().read({}, "k", {}) == (None, None)
    assert OneOf(("a", "b"), "a", "wrong").read({"k": "c"}, "k", {}) == ("c", "wrong")
    assert OneOf(("a", "b"), "a", "wrong").read({}, "k", {}) == ("a", None)
    assert Moment().read({"k": "2026-01-01T08:00:00+08:00"}, "k", {}) == (datetime(2026, 1, 1, tzinfo=UTC), None)
    assert Moment().read({"k": None}, "k", {}) == (None, None)
