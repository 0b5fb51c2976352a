"""A declaration on its way out (issue 20, finding 8): `deprecated: true` with an optional `note`. Brokers may
still send the attribute (with any value: it is dropped, not stored); rules may not read it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.rules.language.attributes import StoredRefusal
from app.rules.language.loader import load_rule_set
from app.rules.tools.lint.directory import lint
from tests.rules.support import BROKER_POLICIES

KYC = """\
  - name: kyc_level
    description: The depth of the holder's identity check (replaced by investor_class).
    values: ["1", "2", "3"]
    deprecated: true
    note: brokers stop sending it by 2027-03-31
"""


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # problems name rules/...


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(BROKER_POLICIES, target)
    path = target / "attributes.yaml"
    path.write_text(path.read_text().rstrip("\n") + "\n\n" + KYC)
    return target


def _at(path: Path, needle: str, column_needle: str) -> str:
    lines = path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if needle in text)
    return f"{line}:{lines[line - 1].index(column_needle) + 1}"


def test_a_deprecated_attribute_is_accepted_with_any_value_and_never_stored(rules: Path) -> None:
    attributes = load_rule_set(rules).attributes
    kyc = attributes.get("kyc_level")
    assert kyc is not None and kyc.deprecated and kyc.note == "brokers stop sending it by 2027-03-31"
    assert [d.name for d in attributes.deprecated] == ["kyc_level"]
    assert attributes.problem("kyc_level", "2") is None
    assert attributes.problem("kyc_level", "anything") is None  # dropped unread: its value refuses nothing
    assert attributes.stored_problem("kyc_level", "2") is StoredRefusal.DEPRECATED
    assert attributes.stored_problem("residency", "sg") is StoredRefusal.VALUE_REFUSED
    assert attributes.stored_problem("colour", "red") is StoredRefusal.UNDECLARED
    assert attributes.stored_problem("residency", "SG") is None
    assert attributes.dropped_note("kyc_level") == (
        "attribute 'kyc_level' is deprecated and was not stored: brokers stop sending it by 2027-03-31"
    )
    assert lint(rules).clean


def test_deprecating_an_attribute_makes_a_new_rule_set_version(rules: Path) -> None:
    before = load_rule_set(rules).version
    path = rules / "attributes.yaml"
    deprecation = "    deprecated: true\n    note: brokers stop sending it by 2027-03-31\n"
    path.write_text(path.read_text().replace(deprecation, ""))
    assert load_rule_set(rules).version != before


def test_a_rule_may_not_read_a_deprecated_attribute(rules: Path) -> None:
    policies = rules / "policies.yaml"
    text = policies.read_text()
    old = "not: {account: {account_type: margin}}"
    assert text.count(old) == 1
    policies.write_text(text.replace(old, "not: {account: {kyc_level: '3'}}"))
    problems = [str(p) for p in lint(rules).problems if p.is_error]
    assert problems == [
        f"rules/policies.yaml:{_at(policies, 'kyc_level', 'kyc_level')}: shortsell-margin-only: attribute "
        "'kyc_level' is deprecated in attributes.yaml: rules may not read it (accounts no longer store it; remove "
        "this use)"
    ]


def test_a_message_may_not_name_a_deprecated_attribute(rules: Path) -> None:
    policies = rules / "policies.yaml"
    lines = policies.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("message:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at] = f"{indent}message: 'refused for KYC level {{kyc_level}}'\n"
    policies.write_text("".join(lines))
    problems = [str(p) for p in lint(rules).problems if p.is_error]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"rules/policies.yaml:{at + 1}:")
    assert "attribute 'kyc_level' is deprecated in attributes.yaml: rules may not read it" in problems[0]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("    deprecated: true\n", "    deprecated: soon\n", "kyc_level: 'deprecated' is true or false"),
        (
            "    deprecated: true\n",
            "",
            "kyc_level: 'note' tells brokers why an attribute is deprecated: add 'deprecated: true'",
        ),
        ("note: brokers stop sending it by 2027-03-31", "note: ''", "kyc_level: 'note' must be non-empty text"),
        ("    deprecated: true\n", "    deprecate: true\n", "kyc_level: unknown key 'deprecate' (did you mean"),
    ],
    ids=["not-a-boolean", "note-alone", "empty-note", "misspelt"],
)
def test_lint_names_each_mistake_of_a_deprecation(rules: Path, old: str, new: str, problem: str) -> None:
    path = rules / "attributes.yaml"
    path.write_text(path.read_text().replace(old, new))
    problems = [str(p) for p in lint(rules).problems if p.is_error]
    assert len(problems) == 1 and problem in problems[0], problems
    assert problems[0].startswith("rules/attributes.yaml:"), problems
