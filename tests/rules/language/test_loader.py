"""Loading rules/: the shipped set and every mistake located by file:line:col (the version: test_version.py)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.rules.language.loader import Problem, RuleSetInvalid, load_rule_set
from app.rules.language.model import Window
from tests.rules.support import VALIDATION_IDS, rules_dir
from tests.support import SHIPPED_RULES

SHIPPED = SHIPPED_RULES
MARKETS = ["HK", "US", "SH", "SZ", "SG", "JP", "UK", "DE", "AU"]
ACCOUNT = [
    "trade",
    "exchange",
    "rollover",
    "withdraw",
    "deposit",
    "public_funds",
    "private_funds",
    "otc",
    "balance_funds",
]
PRODUCTS = ["stock", "options", "shortsell", "ipo", "warrant", "stockgrey", "otc"]
# SPEC §2, in its order: account.*, each per-market product for all 9 markets, va.*, trade.*.
EXPECTED_CATALOG = (
    [f"account.{n}" for n in ACCOUNT]
    + [f"{p}.{m}" for p in PRODUCTS for m in MARKETS]
    + ["va.OSL", "va.HAS"]
    + [f"trade.{n}" for n in ("client", "bo", "fix", "openapi")]
)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path: a problem names its file relative to the working directory (rules/<file>)."""
    monkeypatch.chdir(tmp_path)


def copy_rules(tmp_path: Path) -> Path:
    """A private copy of the shipped rules/ (named rules/, so problems read rules/<file>)."""
    target = tmp_path / "rules"
    shutil.copytree(SHIPPED, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of old in path."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the one line of path containing needle."""
    hits = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits} of {path}"
    return hits[0]


def column_of(path: Path, line_needle: str, needle: str) -> int:
    """The 1-based column where needle starts on the one line containing line_needle."""
    line = path.read_text(encoding="utf-8").splitlines()[line_of(path, line_needle) - 1]
    return line.index(needle) + 1


def problems_of(rules_dir: Path) -> list[Problem]:
    with pytest.raises(RuleSetInvalid) as raised:
        load_rule_set(rules_dir)
    assert raised.value.problems, "RuleSetInvalid without problems"
    assert str(raised.value) == "\n".join(str(p) for p in raised.value.problems)
    return raised.value.problems


def only_problem(rules_dir: Path, file: str = "validation.yaml") -> Problem:
    """The one problem reported in the file that was edited (other files of the copy stay as shipped)."""
    problems = [p for p in problems_of(rules_dir) if p.path == f"rules/{file}"]
    assert len(problems) == 1, problems_of(rules_dir)
    return problems[0]


# --- the shipped rules ------------------------------------------------------------------------------------


def test_shipped_rules_load_clean():
    rule_set = load_rule_set(SHIPPED)
    assert len(rule_set.rules) >= 10
    assert all(rule.id and rule.description and rule.message for rule in rule_set.rules)


def test_catalog_has_78_values_in_spec_order():
    catalog = load_rule_set(SHIPPED).catalog
    assert len(catalog) == 78
    assert list(catalog.values) == EXPECTED_CATALOG
    assert tuple(catalog.markets) == tuple(MARKETS)
    assert not [v for v in catalog.values if v.startswith("flag.")]  # refused by the rule type-banned-group


def test_catalog_is_case_sensitive():
    catalog = load_rule_set(SHIPPED).catalog
    assert "stock.US" in catalog
    assert "stock.us" not in catalog
    assert "Stock.US" not in catalog


def test_catalog_expand_keeps_catalog_order():
    catalog = load_rule_set(SHIPPED).catalog
    assert catalog.expand(("trade.*", "options.US", "account.*")) == tuple(
        [f"account.{n}" for n in ACCOUNT] + ["options.US"] + [f"trade.{n}" for n in ("client", "bo", "fix", "openapi")]
    )
    assert catalog.expand(()) == ()
    assert catalog.expand(("flag.*",)) == ()


def test_rule_ids_are_unique_and_in_file_order():
    rule_set = load_rule_set(SHIPPED)
    ids = [rule.id for rule in rule_set.rules]
    assert len(ids) == len(set(ids))
    text = (SHIPPED / "validation.yaml").read_text(encoding="utf-8")
    positions = [text.index(f"id: {rule_id}\n") for rule_id in ids]
    assert positions == sorted(positions)


# --- mistakes, each located -------------------------------------------------------------------------------


def test_yaml_syntax_error(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "message: is not enabled for this tenant", "message: is not: enabled for this tenant")
    problem = only_problem(rules)
    assert problem.path == "rules/validation.yaml"
    assert problem.line == line_of(path, "is not: enabled")
    assert problem.column == column_of(path, "is not: enabled", ": enabled")  # the second colon
    assert "YAML" in problem.text


def test_yaml_tab_indentation(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "catalog.yaml"
    edit(path, "  - group: va\n", "\t- group: va\n")
    problem = only_problem(rules, "catalog.yaml")
    assert (problem.path, problem.line) == ("rules/catalog.yaml", line_of(path, "\t- group: va"))


def test_yaml_duplicate_key(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "    outcome: NO_STATE_CHANGE\n", "    outcome: NO_STATE_CHANGE\n    outcome: NO_STATE_CHANGE\n")
    lines = path.read_text(encoding="utf-8").splitlines()
    second = [n for n, line in enumerate(lines, start=1) if line == "    outcome: NO_STATE_CHANGE"][1]
    problem = only_problem(rules)
    assert (problem.path, problem.line) == ("rules/validation.yaml", second)


def test_unknown_key_in_a_rule(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "  - id: type-in-catalog\n", "  - id: type-in-catalog\n    severity: high\n")
    problem = only_problem(rules)
    assert (problem.path, problem.line, problem.column) == ("rules/validation.yaml", line_of(path, "severity:"), 5)
    assert problem.rule_id == "type-in-catalog"
    assert "severity" in problem.text


def test_unknown_top_level_key(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    (path).write_text(path.read_text(encoding="utf-8") + "\nversion: 2\n", encoding="utf-8")
    problem = only_problem(rules)
    assert (problem.path, problem.line, problem.column) == ("rules/validation.yaml", line_of(path, "version: 2"), 1)
    assert "version" in problem.text


def test_unknown_key_in_catalog(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "catalog.yaml"
    edit(path, "markets: [", "currencies: [HKD, USD]\nmarkets: [")
    problem = only_problem(rules, "catalog.yaml")
    assert (problem.path, problem.line, problem.column) == ("rules/catalog.yaml", line_of(path, "currencies:"), 1)
    assert problem.rule_id == "catalog"
    assert "currencies" in problem.text


def test_banned_groups_is_gone_and_says_where_the_refusal_lives(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "catalog.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "banned_groups: [flag]\n", encoding="utf-8")
    problem = only_problem(rules, "catalog.yaml")
    assert (problem.line, problem.column, problem.rule_id) == (line_of(path, "banned_groups:"), 1, "catalog")
    assert problem.text == (
        "'banned_groups' is no longer read: a group refused as a whole is a rule in validation.yaml "
        "(type-banned-group refuses flag.*); remove this key"
    )


def test_flag_is_refused_by_its_rule_alone():
    """One source of truth: without the rule, flag.* is merely unknown (the catalog does not list it)."""
    rule_set = load_rule_set(SHIPPED)
    banned = rule_set.rule("type-banned-group")
    assert (banned.outcome, banned.message) == ("INVALID_PERMISSION_TYPE", "the flag.* group is not supported")
    ids = [r.id for r in rule_set.rules]
    assert ids.index("type-banned-group") < ids.index("type-in-catalog")  # its message wins over "not known"
    assert "flag" not in (rule_set.catalog.products + tuple(v.split(".")[0] for v in rule_set.catalog.values))


def test_missing_key(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "    message: is not a known permission type\n", "")
    problem = only_problem(rules)
    assert (problem.path, problem.line) == ("rules/validation.yaml", line_of(path, "- id: type-in-catalog"))
    assert problem.rule_id == "type-in-catalog"
    assert "'message'" in problem.text


def test_missing_markets_in_catalog(tmp_path):
    rules = copy_rules(tmp_path)
    edit(rules / "catalog.yaml", "markets: [HK, US, SH, SZ, SG, JP, UK, DE, AU]\n", "")
    problems = problems_of(rules)
    assert any(p.path == "rules/catalog.yaml" and "markets" in p.text for p in problems), problems


def test_unknown_outcome(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "outcome: NO_STATE_CHANGE", "outcome: NOT_A_CODE")
    problem = only_problem(rules)
    assert (problem.path, problem.line, problem.column) == ("rules/validation.yaml", line_of(path, "NOT_A_CODE"), 5)
    assert problem.rule_id == "must-change-state"
    assert "NOT_A_CODE" in problem.text


@pytest.mark.parametrize("outcome", ["ACCOUNT_NOT_FOUND", "SUCCESS", "invalid_permission_type", "400101"])
def test_service_codes_are_not_rule_outcomes(tmp_path, outcome):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "outcome: NO_STATE_CHANGE", f"outcome: {outcome}")
    problem = only_problem(rules)
    assert (problem.line, problem.rule_id) == (line_of(path, f"outcome: {outcome}"), "must-change-state")


def test_duplicate_rule_ids(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "id: status-required", "id: type-required")
    text = path.read_text(encoding="utf-8").splitlines()
    second = [n for n, line in enumerate(text, start=1) if line == "  - id: type-required"][1]
    problem = only_problem(rules)
    assert (problem.path, problem.line, problem.column) == ("rules/validation.yaml", second, 5)
    assert problem.rule_id == "type-required"
    assert "duplicate" in problem.text


def test_duplicate_catalog_value_within_a_list(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "catalog.yaml"
    edit(path, "names: [OSL, HAS]", "names: [OSL, HAS, OSL]")
    problems = [p for p in problems_of(rules) if p.path == "rules/catalog.yaml"]
    assert problems
    assert any("OSL" in p.text and "twice" in p.text for p in problems), problems
    # Every report of it points at the second OSL.
    position = (line_of(path, "names: [OSL, HAS, OSL]"), column_of(path, "names: [OSL, HAS, OSL]", "OSL]"))
    assert {(p.line, p.column) for p in problems} == {position}


def test_duplicate_catalog_value_across_sections(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "catalog.yaml"
    edit(
        path,
        "    names: [client, bo, fix, openapi]\n",
        "    names: [client, bo, fix, openapi]\n  - group: trade\n    names: [bo]\n",
    )
    problem = only_problem(rules, "catalog.yaml")
    assert problem.path == "rules/catalog.yaml"
    assert "trade.bo" in problem.text
    # The mistake is the second section, not the start of the sections list.
    assert problem.line in (line_of(path, "names: [bo]") - 1, line_of(path, "names: [bo]"))


def test_unknown_message_placeholder(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, 'already {current_status}"', 'already {status}"')
    problem = only_problem(rules)
    assert (problem.path, problem.line, problem.column) == ("rules/validation.yaml", line_of(path, "{status}"), 5)
    assert problem.rule_id == "must-change-state"
    assert "{status}" in problem.text


def test_malformed_message_template(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "is already named by changes[{earlier_index}]", "is already named by changes[{earlier_index]")
    problem = only_problem(rules)
    assert (problem.line, problem.rule_id) == (line_of(path, "{earlier_index]"), "no-duplicate-type")


def test_unknown_change_field(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "{change: {in_catalog: false}}", "{change: {in_the_catalog: false}}")
    problem = only_problem(rules)
    assert (problem.path, problem.line) == ("rules/validation.yaml", line_of(path, "in_the_catalog"))
    assert problem.column == column_of(path, "in_the_catalog", "in_the_catalog")
    assert problem.rule_id == "type-in-catalog"
    assert "in_the_catalog" in problem.text


@pytest.mark.parametrize(
    ("old", "new", "rule_id", "at", "says"),
    [
        (
            "{permission_type: {is: missing}}",
            "{permission_type: {resembles: missing}}",
            "type-required",
            "permission_type",
            "unknown operator 'resembles'",
        ),
        (
            "{permission_type: {is: missing}}",
            "{permission_type: {is: absent}}",
            "type-required",
            "permission_type",
            "'is' takes",
        ),
        (
            "{permission_status: {is: not_text}}",
            "{in_catalog: {is: not_text}}",
            "status-must-be-text",
            "in_catalog",
            "unknown operator 'is'",
        ),
        (
            "{permission_type: {is: missing}}",
            "{market: {is: missing}}",
            "type-required",
            "market",
            "unknown operator 'is'",
        ),
        (
            '{permission_type: "flag.*"}',
            '{permission_type: "flag\\\\..*"}',
            "type-banned-group",
            "permission_type",
            "glob",
        ),
        (
            '{permission_type: "flag.*"}',
            '{permission_type: "(flag|va)[.].*"}',
            "type-banned-group",
            "permission_type",
            "glob",
        ),
        ('{permission_type: "flag.*"}', "{permission_type: 1.5}", "type-banned-group", "permission_type", "not text"),
        ('{permission_type: "flag.*"}', "{permission_type: true}", "type-banned-group", "permission_type", "not text"),
        (
            '{permission_type: "flag.*"}',
            "{permission_type: " + "f" * 65 + "}",
            "type-banned-group",
            "permission_type",
            "longer",
        ),
        ("{in_catalog: false}", "{in_catalog: 'false'}", "type-in-catalog", "in_catalog", "true or false"),
        (
            "{permission_status: [open, close]}",
            "{permission_status: []}",
            "status-open-or-close",
            "permission_status",
            "empty list",
        ),
        (
            "{same_as: current_status}",
            "{same_as: permission_status}",
            "must-change-state",
            "permission_status",
            "another change field",
        ),
        (
            "{same_as: current_status}",
            "{same_as: in_catalog}",
            "must-change-state",
            "permission_status",
            "another change field",
        ),
        (
            "{permission_status: {same_as: current_status}}",
            "{in_catalog: {same_as: named_earlier}}",
            "must-change-state",
            "in_catalog",
            "unknown operator 'same_as'",
        ),
        (
            "{permission_status: {same_as: current_status}}",
            "{current_status: opened}",
            "must-change-state",
            "current_status",
            "open or close",
        ),
        (
            "{permission_type: {is: missing}}",
            "{permission_type: {is: missing, same_as: current_status}}",
            "type-required",
            "permission_type",
            "use one of",
        ),
        (
            "{change: {in_catalog: false}}",
            "{changes: {in_catalog: false}}",
            "type-in-catalog",
            "changes",
            "unknown condition",
        ),
        ("{change: {in_catalog: false}}", "{change: [in_catalog]}", "type-in-catalog", "change", "maps change fields"),
        ("{change: {in_catalog: false}}", "{}", "type-in-catalog", "when", "a condition is a mapping"),
        ("{change: {in_catalog: false}}", "{after: open}", "type-in-catalog", "after", "go with a 'permission'"),
    ],
    ids=[
        "unknown-operator",
        "bad-is",
        "is-on-flag",
        "is-on-part",
        "escaped-glob",
        "regex-glob",
        "number-value",
        "bool-value",
        "long-value",
        "text-for-flag",
        "empty-list",
        "self-compare",
        "same-as-flag",
        "same-as-on-flag",
        "current-status-value",
        "two-operators",
        "unknown-subject",
        "change-not-mapping",
        "empty-condition",
        "after-without-permission",
    ],
)
def test_bad_tests(tmp_path, old, new, rule_id, at, says):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, old, new)
    problem = only_problem(rules)
    assert problem.path == "rules/validation.yaml"
    assert problem.rule_id == rule_id
    assert problem.line == line_of(path, new)
    assert problem.column == column_of(path, new, at)
    assert says in problem.text


def test_block_style_when_is_located_too(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(
        path,
        "    when: {change: {in_catalog: false}}\n",
        "    when:\n      change:\n        in_catalogue: false\n",
    )
    problem = only_problem(rules)
    assert (problem.line, problem.column, problem.rule_id) == (line_of(path, "in_catalogue:"), 9, "type-in-catalog")


def test_every_mistake_is_reported_not_just_the_first(tmp_path):
    rules = copy_rules(tmp_path)
    validation, catalog = rules / "validation.yaml", rules / "catalog.yaml"
    edit(validation, "outcome: NO_STATE_CHANGE", "outcome: NOT_A_CODE")
    edit(validation, "  - id: type-in-catalog\n", "  - id: type-in-catalog\n    severity: high\n")
    edit(catalog, "markets: [", "currencies: [HKD]\nmarkets: [")
    located = {
        (p.path, p.line) for p in problems_of(rules) if p.path in ("rules/validation.yaml", "rules/catalog.yaml")
    }
    assert located == {
        ("rules/validation.yaml", line_of(validation, "NOT_A_CODE")),
        ("rules/validation.yaml", line_of(validation, "severity:")),
        ("rules/catalog.yaml", line_of(catalog, "currencies:")),
    }


def test_missing_file(tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "catalog.yaml").unlink()
    problem = only_problem(rules, "catalog.yaml")
    assert "missing" in problem.text
    assert not [p for p in problems_of(rules) if p.path == "rules/validation.yaml"]


def test_empty_file(tmp_path):
    rules = copy_rules(tmp_path)
    (rules / "validation.yaml").write_text("# nothing here\n", encoding="utf-8")
    only_problem(rules, "validation.yaml")
    assert not [p for p in problems_of(rules) if p.path == "rules/catalog.yaml"]


def test_problem_reads_as_file_line_col_rule_text():
    problem = Problem("rules/validation.yaml", 12, 5, "type-required", "missing key 'message'")
    assert str(problem) == "rules/validation.yaml:12:5: type-required: missing key 'message'"


# --- policies.yaml --------------------------------------------------------------------------------------------

POLICIES = """\
policies:
  - id: options-need-stock
    description: Options need stock.
    when:
      change: {product: options, permission_status: open}
      permission: "stock.{market}"
      after: close
    message: "opening options needs stock.{market}"

  - id: margin-only
    description: Short selling needs margin.
    enforcement: warn
    from: 2026-01-01T00:00:00Z
    until: 2030-01-01
    when:
      all:
        - change: {product: shortsell}
        - not: {account: {account_type: margin}}
        - any:
            - tenant: [t1, "t-*"]
            - account: {status: active, residency: CN}
    message: "{account_type} accounts of {tenant} cannot short {market}"
"""


def policy_rules(tmp_path: Path) -> Path:
    return rules_dir(tmp_path, POLICIES)


def test_policies_load_after_the_validations_in_file_order(tmp_path):
    rule_set = load_rule_set(policy_rules(tmp_path))
    ids = [rule.id for rule in rule_set.rules]
    assert ids[:10] == list(VALIDATION_IDS)
    assert ids[10:] == ["options-need-stock", "margin-only"]
    need, margin = rule_set.rule("options-need-stock"), rule_set.rule("margin-only")
    assert (need.outcome, need.enforcement, need.window, need.field) == (
        "PERMISSION_POLICY_DENIED",
        "deny",
        None,
        "permission_type",
    )
    assert (need.source, need.line) == ("rules/policies.yaml", 2)
    assert margin.enforcement == "warn"
    assert margin.window == Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    assert need.is_policy and not rule_set.rule("must-change-state").is_policy
    assert [a.name for a in rule_set.attributes] == ["account_type", "residency", "investor_class"]


@pytest.mark.parametrize(
    ("old", "new", "rule_id", "at", "says"),
    [
        ("{product: options, ", "{prodcut: options, ", "options-need-stock", "prodcut", "unknown change field"),
        ("{account_type: margin}", "{account_kind: margin}", "margin-only", "account_kind", "unknown account field"),
        ("{account_type: margin}", "{account_type: margn}", "margin-only", "margn", "never 'margn'"),
        ("{status: active, ", "{status: open, ", "margin-only", "open", "never 'open'"),
        ("{status: active, ", "{status: {is: text}, ", "margin-only", "status", "unknown operator"),
        ('tenant: [t1, "t-*"]', "tenant: {is: text}", "margin-only", "tenant", "unknown operator"),
        ('tenant: [t1, "t-*"]', "tenant: []", "margin-only", "tenant", "empty list"),
        ('"stock.{market}"', '"{market}.stock"', "options-need-stock", "permission", "cannot stand there"),
        ('"stock.{market}"', '"stock.{country}"', "options-need-stock", "permission", "cannot stand there"),
        ('"stock.{market}"', '"stock"', "options-need-stock", "permission", "a type like"),
        ('"stock.{market}"', '"stock.U.S"', "options-need-stock", "permission", "a type like"),
        ("after: close", "after: closed", "options-need-stock", "after", "open or close"),
        ("after: close", "# no state", "options-need-stock", "permission", "needs before: or after:"),
        ("enforcement: warn", "enforcement: block", "margin-only", "enforcement", "'enforcement' is one of"),
        ("until: 2030-01-01", "until: 2025-01-01", "margin-only", "until", "'from' must be before 'until'"),
        ("until: 2030-01-01", "until: 2026-01-01T00:00:00Z", "margin-only", "until", "'from' must be before 'until'"),
        ("from: 2026-01-01T00:00:00Z", "from: next tuesday", "margin-only", "from", "a UTC time"),
        ("cannot short {market}", "cannot short {markt}", "margin-only", "message", "{markt}"),
        ("- id: margin-only", "- id: pass", "pass", "id", "reserved"),
        ("- id: margin-only", "- id: type-required", "type-required", "id", "duplicate rule id"),
        ("- id: margin-only", "- id: Margin_Only", "Margin_Only", "id", "lower-case"),
        (
            "    enforcement: warn",
            "    outcome: NO_STATE_CHANGE",
            "margin-only",
            "outcome",
            "a policy's outcome is always PERMISSION_POLICY_DENIED",
        ),
        ("    enforcement: warn", "    field: market", "margin-only", "field", "permission_type or permission_status"),
        ("        - not: {account: {account_type: margin}}", "        - not: [x]", "margin-only", "not", "mapping"),
        ("        - any:", "        - any: []", "margin-only", "any", "non-empty list"),
    ],
    ids=[
        "unknown-change-field",
        "unknown-attribute",
        "attribute-value",
        "account-status-value",
        "account-operator",
        "tenant-operator",
        "tenant-empty",
        "placeholder-place",
        "placeholder-unknown",
        "template-one-part",
        "template-three-parts",
        "state-value",
        "state-missing",
        "enforcement",
        "window-backwards",
        "window-empty",
        "window-not-a-time",
        "message-placeholder",
        "reserved-id",
        "duplicate-across-files",
        "bad-id",
        "outcome-in-policy",
        "field",
        "not-a-list",
        "empty-any",
    ],
)
def test_policy_mistakes_are_located(tmp_path, old, new, rule_id, at, says):
    rules = policy_rules(tmp_path)
    path = rules / "policies.yaml"
    edit(path, old, new)
    if new == "        - any: []":  # the items that followed the emptied any: go too
        edit(path, '            - tenant: [t1, "t-*"]\n            - account: {status: active, residency: CN}\n', "")
    problem = only_problem(rules, "policies.yaml")
    assert (problem.path, problem.rule_id) == ("rules/policies.yaml", rule_id)
    lines = path.read_text(encoding="utf-8").splitlines()
    stripped = new.strip()
    if stripped.startswith("#"):  # a key that went missing is reported where the permission is
        stripped = 'permission: "stock.{market}"'
    assert problem.line == line_of(path, stripped)
    assert lines[problem.line - 1][problem.column - 1 :].startswith(at), (problem, lines[problem.line - 1])
    assert says in problem.text, problem


def test_a_policy_missing_its_keys_names_each(tmp_path):
    rules = policy_rules(tmp_path)
    path = rules / "policies.yaml"
    edit(path, "    description: Options need stock.\n", "")
    edit(path, '    message: "opening options needs stock.{market}"\n', "")
    problems = [p for p in problems_of(rules) if p.path == "rules/policies.yaml"]
    assert {(p.line, p.rule_id, p.text) for p in problems} == {
        (line_of(path, "- id: options-need-stock"), "options-need-stock", "missing key 'description'"),
        (line_of(path, "- id: options-need-stock"), "options-need-stock", "missing key 'message'"),
    }


def test_policy_only_keys_are_refused_in_validation_yaml(tmp_path):
    rules = copy_rules(tmp_path)
    path = rules / "validation.yaml"
    edit(path, "  - id: type-in-catalog\n", "  - id: type-in-catalog\n    enforcement: warn\n")
    problem = only_problem(rules)
    assert (problem.line, problem.column, problem.rule_id) == (line_of(path, "enforcement: warn"), 5, "type-in-catalog")
    assert "only policies have it" in problem.text


def test_policies_yaml_must_hold_a_policies_list(tmp_path):
    rules = rules_dir(tmp_path, "rules:\n  - id: x\n")
    problem = only_problem(rules, "policies.yaml")
    assert (problem.line, problem.rule_id) == (1, "policies")
    assert "'policies' list" in problem.text


def test_a_policy_may_name_an_attribute_in_its_message_but_not_an_undeclared_one(tmp_path):
    rules = rules_dir(
        tmp_path,
        POLICIES.replace("{account_type} accounts", "{residency} residents"),
        attributes="attributes:\n  - name: residency\n    description: Country.\n    pattern: '[A-Z]{2}'\n"
        "  - name: account_type\n"
        "    description: Cash or margin.\n    values: [cash, margin]\n",
    )
    assert load_rule_set(rules).rule("margin-only").message.startswith("{residency} residents")
    (rules / "attributes.yaml").write_text(
        "attributes:\n  - name: account_type\n    description: Cash or margin.\n    values: [cash, margin]\n",
        encoding="utf-8",
    )
    problems = [p for p in problems_of(rules) if p.path == "rules/policies.yaml"]
    assert sorted((p.rule_id, p.text) for p in problems) == [
        ("margin-only", "message names unknown placeholder {residency}"),
        ("margin-only", "unknown account field 'residency' (declared: status, account_type)"),
    ]


def _too_large(parts: int) -> str:
    """A policy whose condition is an all of `parts` two-way anys: 2**parts alternatives."""
    anys = "".join(f"        - any: [{{tenant: a{i}}}, {{tenant: b{i}}}]\n" for i in range(parts))
    return f"""\
policies:
  - id: too-large
    description: Too many alternatives for the engine.
    when:
      all:
{anys}    message: no
"""


def test_a_condition_too_large_for_the_engine_is_a_lint_problem(tmp_path):
    rules = rules_dir(tmp_path, _too_large(7))  # 128 alternatives
    problem = only_problem(rules, "policies.yaml")
    assert (problem.line, problem.column, problem.rule_id) == (4, 5, "too-large")
    assert "more than 64 alternatives" in problem.text


def test_a_long_any_is_too_large_as_well(tmp_path):
    items = "".join(f"        - tenant: t{i}\n" for i in range(65))
    policies = f"policies:\n  - id: long-any\n    description: x\n    when:\n      any:\n{items}    message: no\n"
    problem = only_problem(rules_dir(tmp_path, policies), "policies.yaml")
    assert (problem.line, problem.rule_id) == (4, "long-any")


def test_a_condition_of_64_alternatives_loads(tmp_path):
    rule_set = load_rule_set(rules_dir(tmp_path, _too_large(6)))
    assert rule_set.rule("too-large").id == "too-large"
