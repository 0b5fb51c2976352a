"""Each static check of `permctl rules lint` fires on a planted mistake, at its file:line:column and rule id,
and stays silent on the shipped rules/ and on examples/broker-policies/."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.language.source import Problem, YamlReader
from app.rules.tools.lint.directory import LintResult, lint
from app.rules.tools.lint.static_checks import expired_windows, placeholder_problems
from tests.rules.planted import key_of, locate
from tests.rules.support import BROKER_POLICIES, rules_dir
from tests.support import SHIPPED_RULES

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work in tmp_path: a problem names its file relative to the working directory (rules/<file>)."""
    monkeypatch.chdir(tmp_path)


def policy(rule_id: str, when: str, message: str = "no", extra: str = "") -> str:
    """policies.yaml with one policy."""
    return f"policies:\n  - id: {rule_id}\n    description: x\n{extra}    when: {when}\n    message: {message!r}\n"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


# What app/rules/tools/lint/semantic.py says over the input space (a planted policy without `permission_status: open`
# refuses closes; a planted fragment may never hold). It has its own tests (tools/lint/test_semantic.py); these test the
# static checks, so they look past it, and past the contract (tools/test_contract.py): validations are planted here.
ANALYSIS = ("condition can never hold", "never fires", "matches every change", "this rule refuses closing")


def static_lint(rules: Path, *, now: datetime) -> LintResult:
    result = lint(rules, now=now, contract=False)
    return replace(result, problems=[p for p in result.problems if not p.text.startswith(ANALYSIS)])


def problems_in(rules: Path, file: str, *, now: datetime = NOW) -> list[Problem]:
    return [p for p in static_lint(rules, now=now).problems if p.path == f"rules/{file}"]


def only(rules: Path, file: str, **kwargs: datetime) -> Problem:
    found = problems_in(rules, file, **kwargs)
    assert len(found) == 1, found
    return found[0]


def at(problem: Problem) -> tuple[int, int, str]:
    return problem.line, problem.column, problem.rule_id


# --- the shipped sets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", [SHIPPED_RULES, BROKER_POLICIES], ids=["rules", "broker-policies"])
def test_the_shipped_sets_lint_without_an_error(directory):
    result = static_lint(directory, now=NOW)
    assert result.errors == []
    assert result.clean


@pytest.mark.parametrize("directory", [SHIPPED_RULES, BROKER_POLICIES], ids=["rules", "broker-policies"])
def test_no_placeholder_of_the_shipped_sets_is_meaningless(directory):
    assert placeholder_problems(load_rule_set(directory)) == []


def test_the_only_expired_window_shipped_is_the_one_kept_for_the_record():
    assert expired_windows(load_rule_set(SHIPPED_RULES), NOW) == []
    warned = expired_windows(load_rule_set(BROKER_POLICIES), NOW)
    assert [(p.rule_id, p.severity) for p in warned] == [("deposit-freeze-2025", "warning")]
    assert expired_windows(load_rule_set(BROKER_POLICIES), datetime(2025, 1, 31, tzinfo=UTC)) == []


# --- every problem in every file, in one pass ------------------------------------------------------------


def _case(name: str, rule_id: str) -> str:
    return (
        f"  - name: {name}\n    changes: [{{permission_type: ipo.JP, permission_status: open}}]\n"
        f"    expect: {{code: PERMISSION_POLICY_DENIED, failure_index: 0, rule_id: {rule_id}}}\n"
    )


def test_a_policies_file_that_does_not_parse_hides_nothing_elsewhere(tmp_path):
    broken = policy("ipo-jp", "{change: {permission_type: ipo.JP}}").replace("message: 'no'", "message: a: b")
    rules = rules_dir(tmp_path, broken)
    edit(rules / "catalog.yaml", "names: [OSL, HAS]", "names: [OSL, HAS, OSL]")
    edit(rules / "validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: NO_CHANGE")
    edit(rules / "attributes.yaml", "values: [cash, margin]", "values: [cash, cash]")
    (rules / "cases").mkdir()
    (rules / "cases" / "c.yaml").write_text("cases:\n" + _case("c1", "ipo-jp") + _case("c2", "nope"), "utf-8")
    found = {p.path: p for p in static_lint(rules, now=NOW).problems}
    assert "YAML syntax" in found["rules/policies.yaml"].text
    assert "'OSL' is listed twice" in found["rules/catalog.yaml"].text
    assert "NO_CHANGE" in found["rules/validation.yaml"].text
    assert "'cash' is listed twice" in found["rules/attributes.yaml"].text
    # The broken file's rule still exists for the cases: only the case naming no rule at all is reported.
    assert "rule_id 'nope' names no rule" in found["rules/cases/c.yaml"].text
    assert len([p for p in static_lint(rules, now=NOW).problems if p.path == "rules/cases/c.yaml"]) == 1


def test_each_broken_item_of_a_file_is_reported_and_the_others_are_read(tmp_path):
    text = (
        "policies:\n"
        "  - id: first\n    description: x\n    when: {change: {product: ipo}}\n    message: a: b\n"
        "  - id: second\n    description: x\n    when: {change: {prodcut: ipo}}\n    message: no\n"
        "  - id: third\n    description: x\n    when: {change: [1, 2}\n    message: no\n"
        "  - id: fourth\n    description: x\n    when: {change: {product: ipo}}\n    message: '{markt}'\n"
    )
    rules = rules_dir(tmp_path, text)
    found = sorted((p.line, p.rule_id, p.text.split(":")[0]) for p in problems_in(rules, "policies.yaml"))
    assert found == [
        (5, "-", "YAML syntax"),
        (
            8,
            "second",
            "unknown change field 'prodcut' (use one of permission_type, permission_status, current_status, "
            "product, market, group, name, in_catalog, enabled_for_tenant, named_earlier)",
        ),
        (12, "-", "YAML syntax"),
        (17, "fourth", "message names unknown placeholder {markt}"),
    ]


def test_a_broken_case_hides_no_other_case_of_its_file(tmp_path):
    rules = rules_dir(tmp_path, policy("ipo-jp", "{change: {permission_type: ipo.JP}}"))
    (rules / "cases").mkdir()
    path = rules / "cases" / "c.yaml"
    path.write_text(
        "cases:\n" + _case("c1", "ipo-jp").replace("changes: [", "changes: [[") + _case("c2", "nope"), "utf-8"
    )
    found = problems_in(rules, "cases/c.yaml")
    assert [p.text.split(":")[0] for p in found] == ["YAML syntax", "rule_id 'nope' names no rule"]
    assert at(found[1]) == (*locate(path, "rule_id: nope", "rule_id"), "c2")


def test_rules_and_cases_are_checked_when_the_catalog_cannot_be_read(tmp_path):
    rules = rules_dir(tmp_path, policy("us-stock", "{change: {product: stock, market: us}}", "{markt}"))
    edit(rules / "catalog.yaml", "  - group: va\n", "\t- group: va\n")
    (rules / "cases").mkdir()
    (rules / "cases" / "c.yaml").write_text("cases:\n" + _case("c1", "nope"), "utf-8")
    result = static_lint(rules, now=NOW)
    texts = [f"{p.path}: {p.text}" for p in result.problems]
    assert any(t.startswith("rules/catalog.yaml: YAML syntax") for t in texts), texts
    assert "rules/policies.yaml: 'market' is never 'us': market codes are upper case ('US')" in texts
    assert "rules/policies.yaml: message names unknown placeholder {markt}" in texts
    assert "rules/cases/c.yaml: rule_id 'nope' names no rule" in texts


@pytest.mark.parametrize(
    ("file", "rule_id"),
    [
        ("catalog.yaml", "catalog"),
        ("validation.yaml", "rules"),
        ("policies.yaml", "policies"),
        ("attributes.yaml", "attributes"),
        ("cases/new.yaml", "cases"),
    ],
)
def test_an_empty_file_is_reported(tmp_path, file, rule_id):
    rules = rules_dir(tmp_path, policy("ipo-jp", "{change: {permission_type: ipo.JP}}"))
    (rules / file).parent.mkdir(exist_ok=True)
    (rules / file).write_text("# nothing but a comment\n", encoding="utf-8")
    problem = only(rules, file)
    assert (problem.line, problem.column, problem.rule_id) == (1, 1, rule_id)
    assert "file is empty" in problem.text


# --- outcomes that do not fit ----------------------------------------------------------------------------


def test_a_validation_whose_outcome_is_a_fault_of_the_other_field(tmp_path):
    rules = rules_dir(tmp_path)
    path = rules / "validation.yaml"
    edit(
        path,
        "    field: permission_status\n    when: {change: {permission_status: {same_as",
        "    field: permission_type\n    when: {change: {permission_status: {same_as",
    )
    problem = only(rules, "validation.yaml")
    assert at(problem) == (*key_of(path, "must-change-state", "outcome"), "must-change-state")
    assert problem.text == "NO_STATE_CHANGE is a fault of permission_status, but this rule's field is permission_type"


def test_a_validation_whose_outcome_is_about_a_fact_it_never_reads(tmp_path):
    rules = rules_dir(tmp_path)
    path = rules / "validation.yaml"
    edit(
        path,
        "{change: {named_earlier: true}}\n    outcome: DUPLICATE",
        "{change: {in_catalog: false}}\n    outcome: DUPLICATE",
    )
    problem = only(rules, "validation.yaml")
    assert at(problem) == (*key_of(path, "no-duplicate-type", "when"), "no-duplicate-type")
    assert (
        problem.text
        == "DUPLICATE_PERMISSION_TYPE reports a fault of named_earlier, which this rule's condition never reads"
    )


def test_a_policy_outcome_in_validation_yaml(tmp_path):
    rules = rules_dir(tmp_path)
    edit(rules / "validation.yaml", "outcome: NO_STATE_CHANGE", "outcome: PERMISSION_POLICY_DENIED")
    assert only(rules, "validation.yaml").text == (
        "PERMISSION_POLICY_DENIED is a policy's outcome: write this rule in policies.yaml"
    )


@pytest.mark.parametrize(
    ("outcome", "says"),
    [
        ("INVALID_PERMISSION_TYPE", "a policy's outcome is always PERMISSION_POLICY_DENIED; INVALID_PERMISSION_TYPE"),
        ("DENIED", "unknown outcome 'DENIED' (a policy's outcome is PERMISSION_POLICY_DENIED)"),
    ],
)
def test_a_policy_with_an_outcome_that_is_not_a_policy_s(tmp_path, outcome, says):
    rules = rules_dir(
        tmp_path, policy("ipo-jp", "{change: {permission_type: ipo.JP}}", extra=f"    outcome: {outcome}\n")
    )
    problem = only(rules, "policies.yaml")
    assert at(problem) == (*key_of(rules / "policies.yaml", "ipo-jp", "outcome"), "ipo-jp")
    assert says in problem.text


def test_a_policy_may_name_its_own_outcome(tmp_path):
    extra = "    outcome: PERMISSION_POLICY_DENIED\n"
    rules = rules_dir(tmp_path, policy("ipo-jp", "{change: {permission_type: ipo.JP}}", extra=extra))
    assert static_lint(rules, now=NOW).clean


# --- placeholders that mean nothing for the rule ---------------------------------------------------------


def test_a_market_placeholder_in_a_rule_about_account_values(tmp_path):
    rules = rules_dir(tmp_path, policy("acct", "{change: {group: account, permission_status: open}}", "{market}"))
    problem = only(rules, "policies.yaml")
    assert at(problem) == (*key_of(rules / "policies.yaml", "acct", "message"), "acct")
    assert problem.text == (
        "{market} shows nothing for account.trade, account.exchange, account.rollover, account.withdraw and 5 "
        "more, which this rule can hold for"
    )


def test_a_market_placeholder_in_a_rule_about_every_type(tmp_path):
    rules = rules_dir(tmp_path, policy("opens", "{change: {permission_status: open}}", "not on {market}"))
    problem = only(rules, "policies.yaml")
    assert problem.text.startswith("{market} shows nothing for account.trade")
    assert "va.OSL" not in problem.text  # the list is cut, its length said
    assert "and 11 more" in problem.text  # 9 account, 2 va, 4 trade


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("{change: {product: options, permission_status: open}}", "{market} {product}"),
        ("{change: {group: [va, trade]}}", "{group}.{name}"),
        ("{change: {market: JP}}", "{market}"),  # only per-market types have a market
        ("{change: {permission_status: open}, account: {residency: CN}}", "{residency} {tenant} {permission_type}"),
    ],
)
def test_placeholders_the_rule_always_binds(tmp_path, when, message):
    rules = rules_dir(tmp_path, policy("fine", when, message))
    assert problems_in(rules, "policies.yaml") == []


def test_earlier_index_without_testing_named_earlier(tmp_path):
    rules = rules_dir(tmp_path, policy("idx", "{change: {product: ipo}}", "see changes[{earlier_index}]"))
    problem = only(rules, "policies.yaml")
    assert problem.rule_id == "idx"
    assert problem.text == "{earlier_index} is the change's own index unless the rule tests named_earlier: true"


def test_placeholders_of_a_type_that_was_not_sent(tmp_path):
    rules = rules_dir(tmp_path)
    path = rules / "validation.yaml"
    edit(
        path,
        "message: is required\n\n  - id: type-must-be-text",
        "message: 'is required ({current_status})'\n\n  - id: type-must-be-text",
    )
    problem = only(rules, "validation.yaml")
    assert at(problem) == (*key_of(path, "type-required", "message"), "type-required")
    assert problem.text == "{current_status} shows nothing for (no permission_type), which this rule can hold for"


def test_a_status_placeholder_in_the_rule_for_a_missing_status(tmp_path):
    rules = rules_dir(tmp_path)
    edit(
        rules / "validation.yaml",
        "message: is required\n\n  - id: status-must-be-text",
        "message: 'is required, not {permission_status}'\n\n  - id: status-must-be-text",
    )
    problem = only(rules, "validation.yaml")
    assert problem.rule_id == "status-required"
    assert problem.text == "{permission_status} shows nothing for a change without one"


def test_an_attribute_placeholder_the_account_may_lack_is_a_warning(tmp_path):
    rules = rules_dir(tmp_path, policy("res", "{change: {product: ipo}}", "not for residents of {residency}"))
    result = static_lint(rules, now=NOW)
    assert result.clean
    (problem,) = result.warnings
    assert (problem.rule_id, problem.severity) == ("res", "warning")
    assert problem.text.startswith("{residency} shows nothing for an account without residency")


def test_a_permission_template_the_rule_cannot_bind(tmp_path):
    when = '{change: {group: account}, permission: "stock.{market}", after: open}'
    rules = rules_dir(tmp_path, policy("bind", when))
    path = rules / "policies.yaml"
    problem = only(rules, "policies.yaml")
    assert at(problem) == (*locate(path, "permission:", "permission"), "bind")
    assert problem.text.startswith("'permission' 'stock.{market}': {market} cannot be bound for account.trade")


def test_a_permission_template_bound_for_every_change_it_is_about(tmp_path):
    when = '{change: {product: options}, not: {permission: "stock.{market}", after: open}}'
    assert problems_in(rules_dir(tmp_path, policy("bind", when)), "policies.yaml") == []


# --- market and catalog codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "needle", "says"),
    [
        ("markets: [HK, US,", "markets: [HK, us,", "us", "market code 'us' must be upper case ('US')"),
        ("markets: [HK, US,", "markets: [HK, U-S,", "U-S", "market code 'U-S' is not in the expected form"),
        ("products: [stock,", "products: [Stock,", "Stock", "product 'Stock' is not in the expected form"),
        ("names: [OSL, HAS]", "names: [OSL, HAS-2]", "HAS-2", "name 'HAS-2' is not in the expected form"),
        ("names: [OSL, HAS]", "names: [OSL, HK]", "HK", "'va.HK' would read as product va, market HK"),
        ("group: va", "group: VA", "group", "group 'VA' is not in the expected form"),
    ],
)
def test_catalog_codes_not_in_their_expected_form(tmp_path, old, new, needle, says):
    rules = rules_dir(tmp_path)
    edit(rules / "catalog.yaml", old, new)
    problem = only(rules, "catalog.yaml")
    assert (problem.line, problem.column) == locate(rules / "catalog.yaml", new, needle)
    assert problem.rule_id == "catalog"
    assert says in problem.text


def test_a_product_listed_in_two_sections_is_reported_once(tmp_path):
    rules = rules_dir(tmp_path)
    edit(rules / "catalog.yaml", "  - group: va\n", "  - products: [ipo]\n  - group: va\n")
    problem = only(rules, "catalog.yaml")
    assert (problem.line, problem.column) == locate(rules / "catalog.yaml", "- products: [ipo]", "ipo")
    assert problem.text == "product 'ipo' is listed twice (in two sections)"


def test_a_group_named_like_a_product(tmp_path):
    rules = rules_dir(tmp_path)
    edit(rules / "catalog.yaml", "  - group: va\n", "  - group: stock\n    names: [lending]\n  - group: va\n")
    assert only(rules, "catalog.yaml").text == "group 'stock' is also a product: stock.X cannot be read both ways"


@pytest.mark.parametrize(
    ("when", "key", "says"),
    [
        ("{change: {market: [JP, us]}}", "market", "'market' is never 'us': market codes are upper case ('US')"),
        ("{change: {market: XX}}", "market", "'market' is never 'XX' for a catalog value (markets: HK, US,"),
        ('{change: {market: "u*"}}', "market", "'market' glob 'u*' matches no market of the catalog"),
        ("{change: {product: stocks}}", "product", "'product' is never 'stocks' for a catalog value"),
        ("{change: {group: acount}}", "group", "'group' is never 'acount' for a catalog value (groups: account, va, "),
        ("{change: {name: trades}}", "name", "'name' is never 'trades'"),
        ("{change: {permission_type: stock.us}}", "permission_type", "catalog values are case-sensitive ('stock.US')"),
        (
            "{permission: stock.us, after: open}",
            "permission",
            "'stock.us' is not in the catalog (catalog values are case-sensitive: 'stock.US'): it is never set",
        ),
        ('{permission: "{product}.XX", after: open}', "permission", "names 'XX' after the dot"),
    ],
)
def test_policy_values_no_catalog_value_has(tmp_path, when, key, says):
    rules = rules_dir(tmp_path, policy("codes", when))
    path = rules / "policies.yaml"
    problem = only(rules, "policies.yaml")
    assert at(problem) == (*locate(path, "when:", f"{key}:"), "codes")
    assert says in problem.text


def test_a_validation_may_test_a_lower_case_market_as_sent(tmp_path):
    rules = rules_dir(tmp_path)
    rule = (
        "  - id: market-upper-case\n    description: x\n    field: permission_type\n"
        "    when: {change: {market: [us, hk], in_catalog: false}}\n    outcome: INVALID_PERMISSION_TYPE\n"
        "    message: market codes are upper case\n\n  - id: type-in-catalog\n"
    )
    edit(rules / "validation.yaml", "  - id: type-in-catalog\n", rule)
    assert static_lint(rules, now=NOW).clean


# --- expired windows -------------------------------------------------------------------------------------


def _window(until: str) -> str:
    return f"    from: 2026-01-01\n    until: {until}\n"


def test_an_expired_window_is_a_warning(tmp_path):
    rules = rules_dir(tmp_path, policy("freeze", "{change: {product: ipo}}", extra=_window("2026-03-01T12:00:00Z")))
    result = static_lint(rules, now=datetime(2026, 3, 1, 12, tzinfo=UTC))  # until is exclusive: over at that moment
    assert result.clean
    (problem,) = result.warnings
    assert at(problem) == (*key_of(rules / "policies.yaml", "freeze", "until"), "freeze")
    assert str(problem).endswith(
        "freeze: warning: expired on 2026-03-01 12:00 UTC; it never applies again "
        "(remove it, or keep it for the record)"
    )


def test_a_window_still_in_force_or_to_come_is_no_warning(tmp_path):
    rules = rules_dir(tmp_path, policy("freeze", "{change: {product: ipo}}", extra=_window("2026-03-01T12:00:00Z")))
    assert static_lint(rules, now=datetime(2026, 3, 1, 12, tzinfo=UTC) - timedelta(seconds=1)).warnings == []
    assert static_lint(rules, now=datetime(2025, 1, 1, tzinfo=UTC)).warnings == []


def test_a_broken_attribute_declaration_is_reported_once_not_again_in_every_policy_naming_it(tmp_path):
    when = "{change: {product: shortsell}, not: {account: {account_type: margin}}}"
    rules = rules_dir(tmp_path, policy("margin", when))
    edit(rules / "attributes.yaml", "values: [cash, margin]", "values: [cash, cash]")
    result = static_lint(rules, now=NOW)
    assert [(p.path, p.rule_id) for p in result.errors] == [("rules/attributes.yaml", "account_type")]


def test_an_attributes_file_with_a_syntax_error_still_declares_its_other_attributes(tmp_path):
    when = "{change: {product: shortsell}, not: {account: {account_type: margin}}}"
    rules = rules_dir(tmp_path, policy("margin", when, "not for {investor_class} investors"))
    edit(rules / "attributes.yaml", '    pattern: "[A-Z]{2}"', '    pattern: "[A-Z]{2}": x')
    result = static_lint(rules, now=NOW)
    assert [(p.path, p.text.split(":")[0]) for p in result.errors] == [("rules/attributes.yaml", "YAML syntax")]


def test_a_catalog_with_a_value_that_cannot_be_read_is_not_checked_against(tmp_path):
    rules = rules_dir(tmp_path, policy("va", "{change: {group: va, name: OSL}}"))
    edit(rules / "catalog.yaml", "names: [OSL, HAS]", "names: [OSL, 'H A S']")
    (rules / "cases").mkdir()
    case = "cases:\n  - name: c\n    account: {va.HAS: open}\n    changes: []\n    expect: {code: INVALID_REQUEST}\n"
    (rules / "cases" / "c.yaml").write_text(case, encoding="utf-8")
    result = static_lint(rules, now=NOW)
    assert [p.path for p in result.errors] == ["rules/catalog.yaml"], [str(p) for p in result.problems]


def test_a_catalog_with_only_mistakes_of_form_is_still_checked_against(tmp_path):
    rules = rules_dir(tmp_path, policy("ipo", "{change: {product: ipo, market: JP}}"))
    edit(rules / "catalog.yaml", "markets: [HK, US,", "markets: [HK, us,")
    (rules / "cases").mkdir()
    case = "cases:\n  - name: c\n    account: {stock.ZZ: open}\n    changes: []\n    expect: {code: INVALID_REQUEST}\n"
    (rules / "cases" / "c.yaml").write_text(case, encoding="utf-8")
    texts = [p.text for p in static_lint(rules, now=NOW).errors]
    assert "account names 'stock.ZZ', which is not in the catalog" in texts


@pytest.mark.parametrize("outcome", ["[INVALID_PERMISSION_TYPE]", "{code: 400101}", "400101"])
def test_an_outcome_that_is_not_text_is_one_problem(tmp_path, outcome):
    rules = rules_dir(tmp_path)
    edit(rules / "validation.yaml", "outcome: NO_STATE_CHANGE", f"outcome: {outcome}")
    assert only(rules, "validation.yaml").text.startswith("unknown outcome")


@pytest.mark.parametrize(
    ("text", "problem", "read"),
    [
        ("policies:\n  - id: a\n  - id: b\n    message: 'open\n", "5:1: -: YAML syntax: found unexpected end", ["a"]),
        ("policies:\n  - id: a\nversion: a: b\n", "3:11: -: YAML syntax: mapping values", None),
        ("# c\npolicies:\n\n  - id: a\n    message: a: b\n  - id: b\n", "5:15: -: YAML syntax: mapping values", ["b"]),
    ],
    ids=["unclosed-quote-at-the-end", "outside-the-items", "first-item"],
)
def test_reading_around_a_broken_item(text, problem, read):
    reader = YamlReader(text.encode(), "p.yaml")
    doc = reader.load_items("policies")
    assert len(reader.problems) == 1, reader.problems
    assert str(reader.problems[0]).startswith(f"p.yaml:{problem}")
    assert (None if doc is None else [item["id"] for item in doc["policies"]]) == read
