"""Attribute declarations in rules/attributes.yaml (issue 10): the shipped set, what each allows, and every
mistake lint reports with file:line:column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.rules.language.attributes import AttributeSet
from app.rules.language.loader import load_rule_set
from app.rules.tools.lint.directory import lint
from tests.support import SHIPPED_RULES


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # problems name rules/attributes.yaml


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(SHIPPED_RULES, target)
    return target


def test_the_shipped_set_declares_account_type_residency_and_investor_class() -> None:
    attributes = load_rule_set(SHIPPED_RULES).attributes
    assert attributes.names == ("account_type", "residency", "investor_class")
    assert attributes.get("account_type").values == ("cash", "margin")  # type: ignore[union-attr]
    assert attributes.get("investor_class").values == ("retail", "professional")  # type: ignore[union-attr]
    assert attributes.problem("residency", "SG") is None
    for value in ("sg", "SGP", "S", "S1", "SG\n", ""):
        assert attributes.problem("residency", value) == "not allowed (allowed: text matching [A-Z]{2})"
    assert attributes.problem("account_type", "Cash") == "not allowed (allowed: one of cash, margin)"
    assert attributes.problem("colour", "red") == (
        "not a declared attribute (declared: account_type, residency, investor_class)"
    )
    assert lint(SHIPPED_RULES).clean


def test_a_rules_directory_without_attributes_yaml_declares_none(rules: Path) -> None:
    (rules / "attributes.yaml").unlink()
    rule_set = load_rule_set(rules)
    assert rule_set.attributes == AttributeSet()
    assert rule_set.attributes.problem("account_type", "cash") == "not a declared attribute (declared: none)"
    assert lint(rules).clean


def test_the_file_is_part_of_the_rule_set_version(rules: Path) -> None:
    before = load_rule_set(rules).version
    path = rules / "attributes.yaml"
    path.write_text(path.read_text().replace("[cash, margin]", "[cash, margin, custody]"))
    after = load_rule_set(rules)
    assert after.version != before
    assert after.attributes.problem("account_type", "custody") is None


DECLARATIONS = """\
attributes:
  - name: account_type
    description: Cash or margin.
    values: [cash, margin]
  - name: residency
    description: ISO country code.
    pattern: "[A-Z]{2}"
"""


@pytest.mark.parametrize(
    ("old", "new", "at", "problem"),
    [
        (
            "  - name: residency\n",
            "  - name: account_type\n",
            ("name: account_type", "name"),
            "account_type: attribute 'account_type' is declared twice",
        ),
        (
            "values: [cash, margin]",
            "values: []",
            ("values: []", "values"),
            "account_type: 'values' must be a non-empty list",
        ),
        (
            'pattern: "[A-Z]{2}"',
            'pattern: "[A-Z{2"',
            ("pattern:", "pattern"),
            "residency: 'pattern' is not a valid regular expression",
        ),
        (
            "    description: Cash or margin.\n",
            "    descripton: Cash or margin.\n",
            ("descripton", "descripton"),
            "account_type: unknown key 'descripton' (did you mean 'description'?)",
        ),
        (
            "values: [cash, margin]",
            'values: [cash, margin]\n    pattern: "x"',
            ("- name: account_type", "name"),
            "account_type: an attribute has exactly one of 'values' (a list) or 'pattern'",
        ),
        (
            "values: [cash, margin]",
            "values: [cash, cash]",
            ("values: [cash, cash]", "cash]"),
            "account_type: value 'cash' is listed twice",
        ),
        (
            "values: [cash, margin]",
            "values: [cash, 10]",
            ("values: [cash, 10]", "10"),
            "account_type: value 10 must be non-empty text",
        ),
        (
            "- name: account_type",
            "- name: Account-Type",
            ("name: Account-Type", "name"),
            "Account-Type: 'name' must be lower-case",
        ),
        ("attributes:", "extra: 1\nattributes:", ("extra: 1", "extra"), "attributes: unknown key 'extra'"),
    ],
    ids=[
        "duplicate",
        "empty-values",
        "bad-pattern",
        "unknown-key",
        "values-and-pattern",
        "value-twice",
        "value-not-text",
        "bad-name",
        "unknown-top-level-key",
    ],
)
def test_lint_names_each_mistake_with_file_line_and_column(
    rules: Path, old: str, new: str, at: tuple[str, str], problem: str
) -> None:
    path = rules / "attributes.yaml"
    assert DECLARATIONS.count(old) == 1
    path.write_text(DECLARATIONS.replace(old, new))
    result = lint(rules)
    shown = [str(p) for p in result.problems]
    assert not result.clean and len(shown) == 1, shown
    line_needle, column_needle = at
    lines = path.read_text().splitlines()
    line = [n for n, text in enumerate(lines, start=1) if line_needle in text][-1]  # the last: a duplicate
    column = lines[line - 1].index(column_needle) + 1
    assert shown[0].startswith(f"rules/attributes.yaml:{line}:{column}: {problem}"), shown


def test_a_file_that_is_not_a_declaration_list_is_one_problem(rules: Path) -> None:
    for content, problem in (
        ("", "file is empty"),
        ("- account_type\n", "must be a mapping with an 'attributes' list"),
        ("attributes: [account_type]\n", "each attribute is a mapping"),
        ("attributes: [\n", "YAML syntax"),
    ):
        (rules / "attributes.yaml").write_text(content)
        problems = [str(p) for p in lint(rules).problems]
        assert len(problems) == 1 and problem in problems[0], (content, problems)
        assert problems[0].startswith("rules/attributes.yaml:"), problems


def test_attributes_yaml_is_not_a_stray_file(rules: Path) -> None:
    (rules / "attribute.yaml").write_text("attributes: []\n")
    problems = [str(p) for p in lint(rules).problems]
    assert problems == [
        "rules/attribute.yaml:1:1: -: unexpected file (rules are catalog.yaml, attributes.yaml, validation.yaml, "
        "policies.yaml and cases/*.yaml)"
    ]
