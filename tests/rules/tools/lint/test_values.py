"""Every value a rule or a case names is checked against its declaration (the account status, an attribute's
list or pattern), literal values and globs, at the value's file:line:column with the rule id (or the case's
name), and the message names the attribute, the value and the declaration. Planted in copies of
examples/broker-policies, as a compliance officer would make them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.rules.language.source import Problem
from app.rules.tools.lint.directory import lint
from tests.rules.support import BROKER_POLICIES

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PATTERN = "values match [A-Z]{2}"
CLASSES = "values are 'retail', 'professional'"
NORTHBOUND = "no-northbound-for-cn-residents"


@pytest.fixture
def broker(tmp_path: Path) -> Path:
    destination = tmp_path / "rules"
    shutil.copytree(BROKER_POLICIES, destination)
    return destination


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def errors(rules: Path) -> list[Problem]:
    return [p for p in lint(rules, now=NOW).problems if p.is_error]


def at(path: Path, line_text: str, value: str) -> tuple[str, int, int]:
    """Where value is written on the (only) line holding line_text."""
    lines = path.read_text(encoding="utf-8").splitlines()
    (number,) = [n for n, line in enumerate(lines, start=1) if line_text in line]
    return str(path), number, lines[number - 1].index(value, lines[number - 1].index(line_text)) + 1


def located(problem: Problem) -> tuple[str, int, int]:
    return problem.path, problem.line, problem.column


def test_the_broker_policies_name_only_values_their_declarations_allow():
    assert errors(BROKER_POLICIES) == []


def test_a_pattern_value_in_a_list_is_reported_at_the_value(broker: Path):
    policies = broker / "policies.yaml"
    edit(policies, "account: {residency: CN}", "account: {residency: [CN, hk]}")
    (problem,) = errors(broker)
    assert (problem.rule_id, problem.text) == (
        "no-northbound-for-cn-residents",
        f"'residency' is never 'hk': {PATTERN}",
    )
    assert located(problem) == at(policies, "residency: [CN, hk]", "hk")


def test_a_widening_not_on_a_pattern_attribute_is_reported(broker: Path):
    """`not: {account: {residency: sg}}` holds for every account: short selling would be refused to margin
    accounts too."""
    policies = broker / "policies.yaml"
    edit(
        policies,
        "      not: {account: {account_type: margin}}\n    message: short selling",
        "      not: {account: {account_type: margin}}\n      any: [{not: {account: {residency: sg}}}]\n"
        "    message: short selling",
    )
    (problem,) = errors(broker)
    assert (problem.rule_id, problem.text) == ("shortsell-margin-only", f"'residency' is never 'sg': {PATTERN}")
    assert located(problem) == at(policies, "residency: sg", "sg")


def test_a_value_a_pattern_never_matches_names_it_instead_of_a_condition_that_never_holds(broker: Path):
    policies = broker / "policies.yaml"
    edit(policies, "account: {residency: CN}", "account: {residency: cn}")
    (problem,) = errors(broker)
    assert (problem.rule_id, problem.text) == (
        "no-northbound-for-cn-residents",
        f"'residency' is never 'cn': {PATTERN}",
    )
    assert located(problem) == at(policies, "residency: cn", "cn")
    assert not any("condition can never hold" in p.text for p in lint(broker, now=NOW).problems)


def test_a_list_value_is_reported_with_the_listed_values(broker: Path):
    policies = broker / "policies.yaml"
    edit(policies, "not: {account: {investor_class: professional}}", "not: {account: {investor_class: pro}}")
    (problem,) = errors(broker)
    assert (problem.rule_id, problem.text) == ("va-professional-only", f"'investor_class' is never 'pro': {CLASSES}")
    assert located(problem) == at(policies, "investor_class: pro", "pro")


GLOBS = {  # a glob a rule tests residency with: what lint says of it
    '"c*"': f"'residency' is never 'c*': {PATTERN}",  # upper case only
    '"C??"': f"'residency' is never 'C??': {PATTERN}",  # two letters only
    '"*-*"': f"'residency' is never '*-*': {PATTERN}",
    '"C*"': None,  # CN, CH, ...
    '"*"': None,
    '"?N"': None,
    '["C*", "c*"]': f"'residency' is never 'c*': {PATTERN}",
}


def test_a_glob_is_reported_when_no_value_the_pattern_allows_matches_it(broker: Path):
    policies = broker / "policies.yaml"
    planted = "".join(
        f"\n  - id: glob-{n}\n    description: planted\n    message: planted\n"
        f"    when: {{change: {{product: stock, permission_status: open}}, account: {{residency: {glob}}}}}\n"
        for n, glob in enumerate(GLOBS)
    )
    policies.write_text(policies.read_text(encoding="utf-8") + planted, encoding="utf-8")
    found = {p.rule_id: p.text for p in errors(broker) if p.text.startswith("'residency'")}  # not the analysis
    assert found == {f"glob-{n}": says for n, says in enumerate(GLOBS.values()) if says is not None}


def test_a_glob_on_a_listed_attribute_must_match_a_listed_value(broker: Path):
    policies = broker / "policies.yaml"
    edit(policies, "not: {account: {investor_class: professional}}", 'not: {account: {investor_class: "pro*"}}')
    assert errors(broker) == []
    edit(policies, 'investor_class: "pro*"', 'investor_class: "vip*"')
    assert [p.text for p in errors(broker)] == [f"'investor_class' is never 'vip*': {CLASSES}"]


def test_an_account_status_is_checked_the_same_way(broker: Path):
    edit(broker / "policies.yaml", "account: {residency: CN}", "account: {residency: CN, status: frozen}")
    assert [p.text for p in errors(broker)] == ["'status' is never 'frozen': values are 'active', 'deregistered'"]


def test_every_value_of_an_account_mapping_is_reported(broker: Path):
    edit(broker / "policies.yaml", "account: {residency: CN}", "account: {residency: [hk, CN, sg], account_type: csh}")
    assert [p.text for p in errors(broker)] == [
        f"'residency' is never 'hk': {PATTERN}",
        f"'residency' is never 'sg': {PATTERN}",
        "'account_type' is never 'csh': values are 'cash', 'margin'",
    ]


def test_a_case_attribute_value_is_checked_against_its_declaration(broker: Path):
    cases = broker / "cases" / "account-attributes.yaml"
    edit(
        cases,
        "attributes: {investor_class: retail, account_type: margin}",
        "attributes: {investor_class: pro, residency: sg}",
    )
    found = errors(broker)
    case = "virtual assets for a retail investor are refused"
    assert [(p.rule_id, p.text) for p in found] == [
        (case, f"'investor_class' is never 'pro': {CLASSES}"),
        (case, f"'residency' is never 'sg': {PATTERN}"),
    ]
    assert located(found[0]) == at(cases, "investor_class: pro,", "pro")
    assert located(found[1]) == at(cases, "residency: sg", "sg")


def test_case_values_are_checked_when_a_rule_file_is_broken(broker: Path):
    """One lint run shows both: the broken rule does not hide the case's value."""
    edit(broker / "policies.yaml", "account: {residency: CN}", "account: {residency: hk}")
    edit(
        broker / "cases" / "account-attributes.yaml",
        "attributes: {investor_class: retail, account_type: margin}",
        "attributes: {investor_class: pro}",
    )
    assert [p.text for p in errors(broker)] == [
        f"'residency' is never 'hk': {PATTERN}",
        f"'investor_class' is never 'pro': {CLASSES}",
    ]


def test_anchors_a_full_match_ignores_are_read_as_such(broker: Path):
    edit(broker / "attributes.yaml", 'pattern: "[A-Z]{2}"', 'pattern: "^[A-Z]{2}$"')
    edit(broker / "policies.yaml", "account: {residency: CN}", 'account: {residency: ["C*", "c*"]}')
    assert [p.text for p in errors(broker)] == ["'residency' is never 'c*': values match ^[A-Z]{2}$"]


def test_a_pattern_the_glob_check_cannot_read_leaves_globs_unchecked_and_says_so(broker: Path):
    r"""greenery does not read `[\w-]` (Python does): literal values are still checked with re.fullmatch."""
    edit(broker / "attributes.yaml", 'pattern: "[A-Z]{2}"', 'pattern: "[A-Z][\\\\w-]"')
    edit(broker / "policies.yaml", "account: {residency: CN}", 'account: {residency: ["c*", C-]}')
    problems = lint(broker, now=NOW).problems
    assert [p for p in problems if p.is_error] == []
    (note,) = [p for p in problems if "glob" in p.text]
    assert (note.rule_id, note.severity) == (NORTHBOUND, "warning")
    assert note.text == (
        "'residency' glob 'c*' is not checked against [A-Z][\\w-]: the glob check cannot read that pattern "
        "(its literal values are checked)"
    )
    edit(broker / "policies.yaml", 'residency: ["c*", C-]', 'residency: ["c*", cn]')
    assert [p.text for p in errors(broker)] == ["'residency' is never 'cn': values match [A-Z][\\w-]"]


def test_a_glob_a_pattern_takes_only_with_other_fills_is_judged_and_holds(broker: Path):
    """`HK*` against `[A-Z]{2}[0-9]{2}`: no plain fill of the wildcard (HKx, HKX, HKA, HK0) is a branch, but
    HK00 is; the rule is analysed with it, so it neither goes unreported nor is called a condition that never
    holds."""
    attributes = broker / "attributes.yaml"
    attributes.write_text(
        attributes.read_text(encoding="utf-8")
        + '\n  - name: branch\n    description: The branch that keeps the account.\n    pattern: "[A-Z]{2}[0-9]{2}"\n',
        encoding="utf-8",
    )
    edit(broker / "policies.yaml", "account: {residency: CN}", 'account: {branch: "HK*"}')
    assert errors(broker) == []
    assert not [p for p in lint(broker, now=NOW).problems if p.rule_id == NORTHBOUND]
