"""The contract, checked exhaustively (issue 20, finding 1; SPEC §7b): a set whose validations decide any input
otherwise than the shipped ones is refused by lint and never goes live, naming the clause and an input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set, read_tree, rule_set_version
from app.rules.language.source import Problem, RuleSetInvalid
from app.rules.lifecycle.gate import failing_cases, load_clean
from app.rules.tools.contract import Breach, breaches, checked_breaches
from app.rules.tools.lint.directory import lint
from app.schemas.permissions import load_update_request
from tests.rules.lifecycle.publishing import Publishing
from tests.rules.planted import key_of, locate
from tests.rules.support import BROKER_POLICIES
from tests.support import SHIPPED_RULES

FLAG_BAN = '    when: {change: {permission_type: "flag.*"}}'


def broker_policies(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(BROKER_POLICIES, rules)
    return rules


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def _cut(path: Path, start: str, end: str) -> str:
    """Remove the text from the line holding start up to (not including) the line holding end; return it."""
    text = path.read_text(encoding="utf-8")
    begin = text.rindex("\n", 0, text.index(start)) + 1
    stop = text.rindex("\n", 0, text.index(end, begin + 1)) + 1
    path.write_text(text[:begin] + text[stop:], encoding="utf-8")
    return text[begin:stop]


def drop_the_flag_ban(rules: Path) -> None:
    """Finding 1 as filed: the ban and the case that names it deleted."""
    _cut(rules / "validation.yaml", "- id: type-banned-group", "- id: type-in-catalog")
    _cut(rules / "cases" / "validations.yaml", "- name: the flag group is refused", "- name: an unknown type")


def add_the_flag_group(rules: Path) -> None:
    catalog = rules / "catalog.yaml"
    catalog.write_text(catalog.read_text(encoding="utf-8") + "  - group: flag\n    names: [options, shortsell]\n")


def contract_errors(rules: Path) -> list[Problem]:
    return [p for p in lint(rules).errors if "contract" in p.text]


def only(found: tuple[Breach, ...]) -> Breach:
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("rules", [SHIPPED_RULES, BROKER_POLICIES], ids=["shipped", "broker-policies"])
def test_the_shipped_rules_and_the_example_keep_the_contract(rules: Path):
    assert breaches(load_rule_set(rules)) == ()
    assert lint(rules).clean


def test_a_deleted_ban_is_refused_as_dropped_at_the_top_of_validation_yaml(tmp_path: Path):
    rules = broker_policies(tmp_path)
    drop_the_flag_ban(rules)

    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how) == ("type-banned-group", "dropped")
    assert breach.permission_type == "flag.x"  # outside this catalog: the type-in-catalog rule now refuses it
    assert breach.shipped == "type-banned-group (INVALID_PERMISSION_TYPE)"
    assert breach.given == "type-in-catalog (INVALID_PERMISSION_TYPE)"
    [problem] = contract_errors(rules)
    assert (Path(problem.path), problem.line, problem.column) == (rules / "validation.yaml", 1, 1)
    assert problem.rule_id == "type-banned-group"
    assert problem.text == (
        "the contract's validation 'type-banned-group' is dropped: shipped: type-banned-group "
        "(INVALID_PERMISSION_TYPE); this set: type-in-catalog (INVALID_PERMISSION_TYPE); shown by permission_type "
        "'flag.x', permission_status 'open' (current status 'close', tenant config enabling nothing)"
    )
    with pytest.raises(RuleSetInvalid) as refused:
        load_clean(rules, load_update_request)
    assert [p.rule_id for p in refused.value.problems] == ["type-banned-group"]


def test_a_publication_of_a_set_without_the_ban_is_not_run_and_the_worker_says_why(
    tmp_path: Path, publishing: Publishing
):
    rules = broker_policies(tmp_path)
    live = publishing.worker(rules_dir=rules)
    good = live.refresh()  # nothing published: the worker adopts the example
    drop_the_flag_ban(rules)
    assert rule_set_version(rules) != good.version

    breaching = publishing.publish(read_tree(rules))  # break-glass, with a reason: authorized, yet not run
    live.poll()
    assert live.refresh() is good
    assert (live.published_version, live.live_version) == (good.published_version, breaching)
    assert live.last_reload_error is not None
    assert "the contract's validation 'type-banned-group' is dropped" in live.last_reload_error


def test_the_flag_group_in_the_catalog_is_shown_by_flag_options_also_at_the_catalog(tmp_path: Path):
    rules = broker_policies(tmp_path)
    drop_the_flag_ban(rules)
    add_the_flag_group(rules)

    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how, breach.permission_type) == ("type-banned-group", "dropped", "flag.options")
    assert breach.given == "pass (no validation refuses)"  # the tenant enabling it: accepted, code 0
    assert breach.request["tenant_config"] == ["flag.options"]
    at_validation, at_catalog = contract_errors(rules)
    assert (Path(at_validation.path), at_validation.line, at_validation.column) == (rules / "validation.yaml", 1, 1)
    assert "shown by permission_type 'flag.options', permission_status 'open'" in at_validation.text
    assert "tenant config 'flag.options'" in at_validation.text
    catalog = rules / "catalog.yaml"
    assert (Path(at_catalog.path), at_catalog.line, at_catalog.column) == (
        catalog,
        *locate(catalog, "- group: flag", "flag"),
    )
    assert at_catalog.text.startswith("catalog value 'flag.options' (not in the shipped catalog) shows the contract's")


def test_a_ban_narrowed_to_flag_o_is_refused_with_an_input_it_no_longer_bans(tmp_path: Path):
    rules = broker_policies(tmp_path)
    _edit(rules / "validation.yaml", FLAG_BAN, FLAG_BAN.replace("flag.*", "flag.o*"))
    unchecked = lint(rules, contract=False)  # what lint saw before: clean, and every case passes
    assert unchecked.clean and unchecked.rule_set is not None
    assert failing_cases(unchecked.rule_set, unchecked.cases, load_update_request) == []
    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how, breach.permission_type) == ("type-banned-group", "narrowed", "flag.x")
    [problem] = contract_errors(rules)
    validation = rules / "validation.yaml"
    assert (problem.line, problem.column) == key_of(validation, "type-banned-group", "when")
    assert "is narrowed" in problem.text and "permission_type 'flag.x'" in problem.text


def test_two_validations_swapped_are_refused_as_reordered(tmp_path: Path):
    rules = broker_policies(tmp_path)
    validation = rules / "validation.yaml"
    moved = _cut(validation, "- id: status-open-or-close", "- id: no-duplicate-type")
    _edit(validation, "  - id: must-change-state\n", moved + "  - id: must-change-state\n")
    assert lint(rules).errors == contract_errors(rules)  # nothing else notices: neither rule shadows the other

    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how) == ("status-open-or-close", "reordered")
    assert breach.given == "no-duplicate-type (DUPLICATE_PERMISSION_TYPE)"
    changes = breach.request["changes"]
    assert len(changes) == 2 and changes[0]["permission_type"] == changes[1]["permission_type"]
    assert changes[1]["permission_status"] not in ("open", "close")
    [problem] = contract_errors(rules)
    assert (problem.line, problem.column) == key_of(validation, "status-open-or-close", "id")
    assert "judged changes[1]" in problem.text


def test_a_reworded_message_is_refused_at_the_message(tmp_path: Path):
    rules = broker_policies(tmp_path)
    validation = rules / "validation.yaml"
    _edit(validation, "message: is not a known permission type", "message: is unknown")

    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how) == ("type-in-catalog", "reworded")
    assert breach.shipped == "field 'permission_type', message 'is not a known permission type'"
    assert breach.given == "field 'permission_type', message 'is unknown'"
    [problem] = contract_errors(rules)
    assert (problem.line, problem.column) == key_of(validation, "type-in-catalog", "message")


def test_a_validation_added_before_the_catalog_check_is_refused_as_widened(tmp_path: Path):
    rules = broker_policies(tmp_path)
    _edit(
        rules / "validation.yaml",
        "  - id: type-in-catalog\n",
        "  - id: no-japan\n    description: x\n    field: permission_type\n    when: {change: {market: JP}}\n"
        "    outcome: INVALID_PERMISSION_TYPE\n    message: is not offered\n\n  - id: type-in-catalog\n",
    )
    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how, breach.shipped) == ("no-japan", "widened", "pass (no validation refuses)")
    assert breach.permission_type.endswith(".JP")
    [problem] = contract_errors(rules)
    assert problem.text.startswith("validation 'no-japan' is not one the package ships: the contract is widened")


def test_a_changed_code_is_refused_as_recoded_at_the_outcome(tmp_path: Path):
    rules = broker_policies(tmp_path)
    validation = rules / "validation.yaml"
    _edit(validation, "outcome: NO_STATE_CHANGE", "outcome: INVALID_PERMISSION_STATUS")

    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how) == ("must-change-state", "recoded")
    assert (breach.shipped, breach.given) == (
        "must-change-state (NO_STATE_CHANGE)",
        "must-change-state (INVALID_PERMISSION_STATUS)",
    )
    [problem] = contract_errors(rules)
    assert (problem.line, problem.column) == key_of(validation, "must-change-state", "outcome")


def test_the_check_runs_once_per_rule_set_version(tmp_path: Path):
    rules = broker_policies(tmp_path)
    drop_the_flag_ban(rules)
    first = checked_breaches(load_rule_set(rules))
    assert checked_breaches(load_rule_set(rules)) is first
    assert breaches(load_rule_set(rules)) is not first and breaches(load_rule_set(rules)) == first


def test_diff_compares_a_set_that_breaks_the_contract(tmp_path: Path):
    rules = broker_policies(tmp_path)
    drop_the_flag_ban(rules)
    assert lint(rules, contract=False).clean
    assert not lint(rules).clean


def _ban_unless(condition: str) -> str:
    return f'    when:\n      change: {{permission_type: "flag.*"}}\n      not: {condition}'


BRANCH = '  - name: branch\n    description: The branch that keeps the account.\n    pattern: "[A-Z]{2}[0-9]{2}"\n'


def test_a_ban_narrowed_by_a_glob_on_a_pattern_attribute_is_refused(tmp_path: Path):
    """A glob no plain fill of its wildcards satisfies (`HK*` against `[A-Z]{2}[0-9]{2}`) still stands for the
    values both allow (HK00): the ban lifted for one branch is a narrowing, even with the flag group in the
    catalog, where `flag.options` would otherwise be accepted for that branch."""
    rules = broker_policies(tmp_path)
    add_the_flag_group(rules)
    attributes = rules / "attributes.yaml"
    attributes.write_text(attributes.read_text(encoding="utf-8") + BRANCH, encoding="utf-8")
    _edit(rules / "validation.yaml", FLAG_BAN, _ban_unless('{account: {branch: "HK*"}}'))
    breach = only(breaches(load_rule_set(rules)))
    assert (breach.clause, breach.how) == ("type-banned-group", "narrowed")
    assert contract_errors(rules)


def test_a_breach_shown_by_a_relation_names_what_was_open_before(tmp_path: Path):
    rules = broker_policies(tmp_path)
    _edit(rules / "validation.yaml", FLAG_BAN, _ban_unless('{permission: "stock.HK", before: open}'))
    [error] = contract_errors(rules)
    assert "also open before: 'stock.HK'" in error.text, error.text
