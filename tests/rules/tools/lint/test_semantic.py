"""tools/lint/semantic.py through lint(): each planted logic mistake is reported at its rule's file:line:column
with its id (a shadowed rule naming the rule that shadows it, a catch-all, a contradiction, a policy refusing a
close), windows are judged exactly, and the shipped sets show no false positives."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

from app.rules.language.loader import load_rule_set
from app.rules.language.source import Problem
from app.rules.tools.lint.directory import lint
from app.rules.tools.lint.semantic import semantic_problems
from tests.rules.support import BROKER_POLICIES, rules_dir
from tests.support import SHIPPED_RULES


def _policy(rule_id: str, when: str, *, extra: str = "") -> str:
    return f"""
  - id: {rule_id}
    description: planted
{extra}    when: {when}
    message: refused
"""


BEFORE_WINDOWS_END = datetime(2026, 1, 15, tzinfo=UTC)  # no window planted here has expired (lint warns then)


def _lint(tmp_path: Path, *policies: str) -> tuple[Path, list[Problem]]:
    directory = rules_dir(tmp_path, "policies:" + "".join(policies))
    return directory, lint(directory, now=BEFORE_WINDOWS_END).problems


def _at(directory: Path, file: str, rule_id: str) -> tuple[str, int, int]:
    """Where a rule's mapping starts: its `id:` key."""
    path = directory / file
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() in (f"- id: {rule_id}", f"id: {rule_id}"):
            return str(path), number, line.index("id:") + 1
    raise AssertionError(f"{rule_id} not in {path}")


def _only(problems: list[Problem], rule_id: str) -> Problem:
    found = [p for p in problems if p.rule_id == rule_id]
    assert len(found) == 1, [str(p) for p in problems]
    return found[0]


def test_a_rule_shadowed_by_an_earlier_one_names_it(tmp_path: Path):
    directory, problems = _lint(
        tmp_path,
        _policy("stock-open", "{change: {product: stock, permission_status: open}}"),
        _policy("stock-us-open", "{change: {permission_type: stock.US, permission_status: open}}"),
    )
    problem = _only(problems, "stock-us-open")
    assert (problem.path, problem.line, problem.column) == _at(directory, "policies.yaml", "stock-us-open")
    assert problem.is_error
    assert problem.text == "never fires: every change it matches is refused first by 'stock-open'"
    assert [p.rule_id for p in problems] == ["stock-us-open"]
    assert str(problem).startswith(f"{directory}/policies.yaml:{problem.line}:5: stock-us-open: never fires")


def test_a_catch_all_at_the_top_is_named_and_shadows_every_later_rule(tmp_path: Path):
    directory, problems = _lint(
        tmp_path,
        _policy("catch-all", '{change: {permission_type: "*"}}'),
        _policy("stock-open", "{change: {product: stock, permission_status: open}}"),
        _policy("va-retail", "{change: {group: va}, account: {investor_class: retail}}"),
    )
    # With the catch-all set aside, lint still finds the rest: va-retail would refuse a close.
    assert "this rule refuses closing va.OSL" in _only([p for p in problems if not p.is_error], "va-retail").text
    problems = [p for p in problems if p.is_error]
    catch_all = [p for p in problems if p.rule_id == "catch-all"]
    assert len(catch_all) == 1
    assert (catch_all[0].line, catch_all[0].column) == _at(directory, "policies.yaml", "catch-all")[1:]
    assert catch_all[0].text.startswith("matches every change that reaches it: it refuses every request")
    assert "the 2 rule(s) after it can never fire" in catch_all[0].text
    for rule_id in ("stock-open", "va-retail"):
        problem = _only(problems, rule_id)
        assert problem.text == "never fires: every change it matches is refused first by 'catch-all'"
        assert (problem.line, problem.column) == _at(directory, "policies.yaml", rule_id)[1:]


def test_a_catch_all_at_the_top_of_the_validations_shadows_them_all(tmp_path: Path):
    directory = rules_dir(tmp_path)
    validation = directory / "validation.yaml"
    planted = textwrap.indent(
        textwrap.dedent(
            """\
            - id: refuse-everything
              description: planted at the top
              field: permission_type
              when: {any: [{change: {permission_type: {is: missing}}}, {change: {permission_type: {is: text}}},
                           {change: {permission_type: {is: not_text}}}]}
              outcome: INVALID_PERMISSION_TYPE
              message: refused
            """
        ),
        "  ",
    )
    validation.write_text(validation.read_text().replace("rules:\n", "rules:\n" + planted, 1))
    problems = lint(directory, contract=False).problems  # shadowing is the point (the contract: test_contract.py)
    rules = load_rule_set(directory).rules
    top = _only(problems, "refuse-everything")
    assert (top.path, top.line, top.column) == _at(directory, "validation.yaml", "refuse-everything")
    assert "matches every change that reaches it" in top.text and "the 10 rule(s) after it" in top.text
    shadowed = {p.rule_id: p.text for p in problems if p.rule_id != "refuse-everything"}
    assert set(shadowed) == {r.id for r in rules[1:]}
    assert set(shadowed.values()) == {"never fires: every change it matches is refused first by 'refuse-everything'"}


def test_contradictory_conditions_can_never_hold(tmp_path: Path):
    directory, problems = _lint(
        tmp_path,
        _policy("us-and-hk", "{all: [{change: {market: US}}, {change: {market: HK}}]}"),
        _policy("open-and-close", "{all: [{change: {permission_status: open}}, {change: {permission_status: close}}]}"),
        _policy("margin-and-not", "{account: {account_type: margin}, not: {account: {account_type: [margin]}}}"),
        _policy("lower-case-residency", "{change: {group: va}, account: {residency: cn}}"),  # [A-Z]{2} only
    )
    for rule_id in ("us-and-hk", "open-and-close", "margin-and-not"):
        problem = _only(problems, rule_id)
        assert problem.is_error and problem.text.startswith("condition can never hold"), problem
        assert (problem.path, problem.line, problem.column) == _at(directory, "policies.yaml", rule_id)
    # A value its declaration never allows is the cause, named at the value (tests/rules/tools/lint/test_values.py)
    assert _only(problems, "lower-case-residency").text == "'residency' is never 'cn': values match [A-Z]{2}"


def test_a_deny_policy_refusing_a_close_is_a_warning_naming_a_type(tmp_path: Path):
    directory, problems = _lint(
        tmp_path,
        _policy("no-options-close", "{change: {product: options, permission_status: close}}"),
        _policy("warn-close", "{change: {product: stock, permission_status: close}}", extra="    enforcement: warn\n"),
        _policy("va-close", "{change: {permission_type: va.OSL, permission_status: close}}"),
    )
    options = _only(problems, "no-options-close")
    assert options.severity == "warning"
    assert options.text.startswith("this rule refuses closing options.HK (and 8 other type(s))")
    assert (options.path, options.line, options.column) == _at(directory, "policies.yaml", "no-options-close")
    assert _only(problems, "va-close").text.startswith("this rule refuses closing va.OSL:")
    assert "warn-close" not in {p.rule_id for p in problems}  # it refuses nothing
    assert lint(directory).clean  # warnings let the set load


def test_windows_are_judged_exactly(tmp_path: Path):
    window = "    from: 2026-01-01\n    until: 2026-02-01\n"
    in_window = "{change: {permission_type: options.US, permission_status: open}}"
    _, problems = _lint(
        tmp_path,
        _policy("freeze-options", "{change: {product: options, permission_status: open}}", extra=window),
        _policy("options-hk", "{change: {permission_type: options.HK, permission_status: open}}"),
        _policy("options-open", "{change: {product: options, permission_status: open}}"),
        _policy("options-us-in-window", in_window, extra=window),
    )
    # options-hk is covered by the freeze only inside its window: it fires outside, so it is not reported
    assert [p.rule_id for p in problems] == ["options-us-in-window"]
    assert problems[0].text == "never fires: every change it matches is refused first by 'freeze-options'"


def test_a_policy_only_validations_refuse_names_them(tmp_path: Path):
    _, problems = _lint(tmp_path, _policy("unknown-types", "{change: {in_catalog: false}}"))
    problem = _only(problems, "unknown-types")
    assert problem.text == (
        "never fires: every change it matches is refused first by 'type-banned-group', 'type-in-catalog'"
    )


def test_the_shipped_sets_have_no_false_positives():
    assert semantic_problems(load_rule_set(SHIPPED_RULES)) == []
    broker = semantic_problems(load_rule_set(BROKER_POLICIES))
    # stock-close-needs-options-closed refuses a close on purpose: a warning, and the set still lints clean
    assert [(p.rule_id, p.severity) for p in broker] == [("stock-close-needs-options-closed", "warning")]
    assert broker[0].text.startswith("this rule refuses closing stock.HK (and 8 other type(s))")
    _, line, column = _at(BROKER_POLICIES, "policies.yaml", "stock-close-needs-options-closed")
    assert (broker[0].line, broker[0].column) == (line, column) and broker[0].path.endswith("policies.yaml")
    assert lint(BROKER_POLICIES).clean


TENANTS = ", ".join(f"t{i}" for i in range(30))
RESIDENCIES = ", ".join(f"A{chr(65 + i)}" for i in range(26))
TOO_MANY = _policy(
    "reads-everything",
    f"{{change: {{product: options}}, tenant: [{TENANTS}], account: {{residency: [{RESIDENCIES}]}},"
    " not: {account: {investor_class: retail}},"
    " any: [{account: {account_type: cash}}, {account: {status: deregistered}}]}",
)


def test_a_rule_reading_too_much_is_an_error_at_it_not_a_hang(tmp_path: Path):
    directory, problems = _lint(tmp_path, TOO_MANY)
    problem = _only(problems, "reads-everything")
    assert (problem.path, problem.line, problem.column) == _at(directory, "policies.yaml", "reads-everything")
    assert problem.is_error
    assert problem.text.startswith(
        "too large to analyse: it reads 'account_type' (3 values), 'residency' (28 values), 'investor_class' "
        "(3 values), tells 31 tenants apart and reads the account status (2 values), so a change of 'options.HK' "
        "(or 8 other type(s)) has 624,960 inputs to judge (at most 50,000 per permission type); "
        "name fewer attribute values"
    )
    assert not lint(directory).clean
