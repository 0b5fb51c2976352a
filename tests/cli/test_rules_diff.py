"""permctl rules diff OLD NEW on real directories (issue 12, acceptance 2): the shipped rules against
examples/broker-policies list every policy with the inputs it newly denies and nothing else; a set against
itself or a reorder that changes no verdict shows nothing; a reorder that does is reported; errors are one line."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from app.rules.language.loader import load_rule_set
from app.rules.runtime.decision import decide
from app.rules.runtime.decision_input import DecisionInput
from app.rules.runtime.engine import DurableRulesEngine
from tests.cli.runner import invoke as permctl
from tests.cli.runner import ok, one_line_error
from tests.rules.support import BROKER_POLICIES
from tests.support import SHIPPED_RULES

DENY_POLICIES = {
    "options-need-stock",
    "stock-close-needs-options-closed",
    "options-at-most-3-markets",
    "shortsell-margin-only",
    "va-professional-only",
    "ipo-closed-markets",
    "no-northbound-for-cn-residents",
    "withdraw-freeze",
    "deposit-freeze-2025",
}


def _swap(path: Path, first: str, second: str) -> None:
    """Swap two rules of a rules file (each a `  - id: X` block, comments kept with the block above)."""
    text = path.read_text(encoding="utf-8")
    head, *blocks = text.split("\n  - id: ")
    names = [block.split("\n", 1)[0] for block in blocks]
    i, j = names.index(first), names.index(second)
    blocks[i], blocks[j] = blocks[j], blocks[i]
    blocks = [b if b.endswith("\n") else b + "\n" for b in blocks]
    path.write_text("\n  - id: ".join([head, *blocks]).rstrip("\n") + "\n", encoding="utf-8")


def _copy(tmp_path: Path, source: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def _json(*args: str) -> tuple[int, dict]:
    result = permctl("rules", "diff", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def shipped_to_broker() -> tuple[int, dict]:
    return _json(str(SHIPPED_RULES), str(BROKER_POLICIES))


def test_shipped_to_broker_lists_every_policy_with_what_it_newly_denies_and_nothing_else(shipped_to_broker):
    code, report = shipped_to_broker
    assert code == 1 and report["differs"]
    groups = report["groups"]
    verdicts = [g for g in groups if g["kind"] == "verdict"]
    assert {g["old"] for g in verdicts} == {"pass"}
    assert {g["new"] for g in verdicts} == {f"{rule} (PERMISSION_POLICY_DENIED)" for rule in DENY_POLICIES}
    others = {(g["kind"], g["old"], g["new"]) for g in groups if g["kind"] != "verdict"}
    assert others == {("warning", "-", "otc-open-warning"), ("dryrun", "-", "stockgrey-dryrun")}
    by_rule = {g["new"].split(" ")[0]: g for g in verdicts}
    assert by_rule["shortsell-margin-only"]["permission_types"] == ["shortsell.* (9)"]
    assert by_rule["shortsell-margin-only"]["permission_status"] == "open"
    assert by_rule["shortsell-margin-only"]["attributes.account_type"] == "cash, (absent)"
    assert by_rule["ipo-closed-markets"]["permission_types"] == ["ipo.JP", "ipo.DE"]
    assert by_rule["no-northbound-for-cn-residents"]["attributes.residency"] == "CN"
    assert by_rule["stock-close-needs-options-closed"]["permission_status"] == "close"
    assert by_rule["withdraw-freeze"]["time"] == "2026-01-01T00:00Z to 2030-01-01T00:00Z"
    assert by_rule["options-at-most-3-markets"]["count"] == "3 other options.* open, 4 or more other options.* open"
    assert report["counts"]["verdict"] == sum(g["inputs"] for g in verdicts)


def test_each_example_of_the_plan_is_judged_so_by_the_engine(shipped_to_broker):
    _, report = shipped_to_broker
    old, new = DurableRulesEngine(load_rule_set(SHIPPED_RULES)), DurableRulesEngine(load_rule_set(BROKER_POLICIES))
    for group in report["groups"]:
        for example in group["examples"]:
            decision_input = DecisionInput(
                tenant_id=example["tenant"],
                tenant_patterns=tuple(example["tenant_config"]),
                changes=tuple(example["changes"]),
                stored=example["account"],
                account_status=example["account_status"],
                attributes=example["attributes"],
                at=datetime.fromisoformat(example["at"]),
            )
            index = example["judged_change"]
            before, after = decide(old, decision_input), decide(new, decision_input)
            assert before.held[index] != after.held[index] or group["kind"] != "verdict", example
            if group["kind"] == "verdict":
                assert after.denial is not None and after.denial.index == index
                assert f"{after.denial.rule.id} ({after.denial.rule.outcome})" == group["new"]
            elif group["kind"] == "warning":
                assert [w.rule.id for w in after.warnings if w.index == index] == [group["new"]]


def test_the_text_report_names_every_policy():
    result = permctl("rules", "diff", str(SHIPPED_RULES), str(BROKER_POLICIES))
    assert result.returncode == 1, result.stdout + result.stderr
    for rule in (*DENY_POLICIES, "otc-open-warning", "stockgrey-dryrun"):
        assert rule in result.stdout
    assert "  pass -> shortsell-margin-only (PERMISSION_POLICY_DENIED): 18 input(s)" in result.stdout
    assert "      types: shortsell.* (9)" in result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("186 change verdict, 11 group(s) differ")


@pytest.mark.parametrize("directory", [SHIPPED_RULES, BROKER_POLICIES], ids=["shipped", "broker-policies"])
def test_a_set_against_itself_shows_nothing(directory: Path):
    output = ok(permctl("rules", "diff", str(directory), str(directory)))
    assert output.strip().endswith("no difference") and len(output.strip().splitlines()) == 1
    code, report = _json(str(directory), str(directory))
    assert (code, report["differs"], report["groups"]) == (0, False, [])


def test_a_reorder_that_changes_no_verdict_shows_nothing(tmp_path: Path):
    reordered = _copy(tmp_path, BROKER_POLICIES, "reordered")
    # options-need-stock stays before options-at-most-3-markets: past it, a 4th market without stock would be
    # refused by the count instead
    _swap(reordered / "policies.yaml", "options-need-stock", "stock-close-needs-options-closed")
    _swap(reordered / "policies.yaml", "va-professional-only", "withdraw-freeze")
    rules = [r.id for r in load_rule_set(reordered).rules]
    assert rules.index("stock-close-needs-options-closed") < rules.index("options-need-stock")  # the swap happened
    code, report = _json(str(BROKER_POLICIES), str(reordered))
    assert (code, report["groups"]) == (0, [])


def test_a_reorder_that_changes_a_verdict_is_reported(tmp_path: Path):
    reordered = _copy(tmp_path, SHIPPED_RULES, "reordered")
    _swap(reordered / "validation.yaml", "type-required", "status-required")
    code, report = _json(str(SHIPPED_RULES), str(reordered))
    assert code == 1
    # status-required now comes first: a change missing its status and failing a type check is told so
    groups = report["groups"]
    assert {(g["kind"], g["new"], g["permission_status"]) for g in groups} == {
        ("verdict", "status-required (INVALID_PERMISSION_STATUS)", "<missing>")
    }
    old = {g["old"].split(" ")[0]: g["permission_types"] for g in groups}
    assert set(old) == {
        "type-required",
        "type-must-be-text",
        "type-banned-group",
        "type-in-catalog",
        "type-enabled-for-tenant",
    }
    assert (old["type-required"], old["type-must-be-text"], old["type-banned-group"]) == (
        ["<missing>"],
        ["<not text>"],
        ["flag.x"],
    )
    (not_enabled,) = (g for g in groups if g["old"].startswith("type-enabled-for-tenant"))
    assert not_enabled["enabled_for_tenant"] == "no"


def test_a_reorder_lint_refuses_is_not_diffed(tmp_path: Path):
    reordered = _copy(tmp_path, SHIPPED_RULES, "reordered")
    _swap(reordered / "validation.yaml", "type-banned-group", "type-in-catalog")  # banned-group never fires
    line = one_line_error(permctl("rules", "diff", str(SHIPPED_RULES), str(reordered)))
    assert line == f"Error: {reordered}: 1 problem(s); run `permctl rules lint --rules {reordered}`"


def test_a_changed_message_is_its_own_section(tmp_path: Path):
    edited = _copy(tmp_path, SHIPPED_RULES, "edited")
    path = edited / "validation.yaml"
    path.write_text(path.read_text().replace("message: is not enabled for this tenant", "message: is not enabled"))
    result = permctl("rules", "diff", str(SHIPPED_RULES), str(edited))
    assert result.returncode == 1
    assert "message changes (same rule and code, different text)" in result.stdout
    assert "verdict changes" not in result.stdout
    assert "type-enabled-for-tenant (INVALID_PERMISSION_TYPE) -> type-enabled-for-tenant" in result.stdout


def test_a_missing_or_broken_directory_is_one_line_and_exit_2(tmp_path: Path):
    missing = one_line_error(permctl("rules", "diff", str(SHIPPED_RULES), str(tmp_path / "nope")))
    assert missing == f"Error: {tmp_path / 'nope'}: no such directory"
    broken = _copy(tmp_path, SHIPPED_RULES, "broken")
    (broken / "catalog.yaml").write_text("markets: [HK\n")
    result = permctl("rules", "diff", str(broken), str(SHIPPED_RULES))
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith(f"Error: {broken}: ") and "run `permctl rules lint" in line


def test_a_rule_too_large_to_judge_is_named_in_one_line_and_exit_2(tmp_path: Path):
    from tests.rules.support import rules_dir
    from tests.rules.tools.lint.test_semantic import TOO_MANY

    directory = rules_dir(tmp_path, "policies:" + TOO_MANY)
    result = permctl("rules", "diff", str(SHIPPED_RULES), str(directory))
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith(
        f"Error: {directory}: 1 problem(s), among them {directory}/policies.yaml:2:5: reads-everything: "
        "too large to analyse: it reads 'account_type' (3 values), "
    )
    assert line.endswith(f"; run `permctl rules lint --rules {directory}`")


def _suite_rule(*permissions: str) -> str:
    tests = "".join(f'\n        - {{permission: "{p}", after: close}}' for p in permissions)
    return f"""
  - id: warrants-need-a-suite
    description: Opening warrants needs other permissions open.
    when:
      all:
        - change: {{product: warrant, permission_status: open}}{tests}
    message: warrants need the suite
"""


def test_two_sets_judged_together_too_large_name_the_rule_in_one_line_and_exit_2(tmp_path: Path):
    """Each set relates three permissions to a warrant (lint judges them), the two together six: the joint
    partition of the warrant types is too large, and diff names the rule and what it reads."""
    from app.rules.tools.lint.directory import lint

    old, new = _copy(tmp_path, BROKER_POLICIES, "old"), _copy(tmp_path, BROKER_POLICIES, "new")
    for directory, permissions in (
        (old, ("stock.{market}", "options.{market}", "shortsell.{market}")),
        (new, ("account.trade", "account.exchange", "trade.client")),
    ):
        path = directory / "policies.yaml"
        path.write_text(path.read_text(encoding="utf-8") + _suite_rule(*permissions), encoding="utf-8")
        assert lint(directory).clean
    result = permctl("rules", "diff", str(old), str(new))
    assert result.returncode == 2
    line = one_line_error(result)
    assert line.startswith(
        "Error: too large to analyse: a change of 'warrant.HK' (or 6 other type(s)) has 163,840 inputs to judge "
        f"(at most 50,000 per permission type); {old}/policies.yaml:"
    )
    assert ": warrants-need-a-suite relates 3 permissions (4 states each): relate fewer permissions" in line


EU_OTC_AND_WITHDRAW = """
  - id: deposit-needs-withdraw-closed
    description: Deposits close only once withdrawals are closed.
    when:
      change: {permission_type: account.deposit, permission_status: close}
      permission: account.withdraw
      after: open
    message: close withdrawals first

  - id: otc-professional-terms
    description: Professional investors opening OTC are sent the professional terms.
    enforcement: warn
    when:
      change: {product: otc, permission_status: open}
      account: {investor_class: professional}
    message: send the professional OTC terms

"""


def _signed_off_edit(tmp_path: Path) -> Path:
    """An edit of examples/broker-policies a reviewer signs: EU residents on otc.US are no longer warned (while
    a new warning reads the investor class of OTC openings), a new policy relates the fixed account.withdraw,
    a group name joins the catalog, an attribute is declared and another gains a value."""
    edited = _copy(tmp_path, BROKER_POLICIES, "edited")
    shutil.rmtree(edited / "cases")
    policies = edited / "policies.yaml"
    text = policies.read_text(encoding="utf-8")
    text = text.replace(
        "      change: {product: otc, permission_status: open}\n",
        "      change: {product: otc, permission_status: open}\n"
        "      not:\n        all:\n          - change: {market: US}\n          - account: {residency: [DE, FR]}\n",
    )
    text = text.replace("  - id: withdraw-freeze\n", EU_OTC_AND_WITHDRAW.lstrip("\n") + "  - id: withdraw-freeze\n")
    policies.write_text(text, encoding="utf-8")
    catalog = edited / "catalog.yaml"
    catalog.write_text(catalog.read_text(encoding="utf-8").replace("names: [OSL, HAS]", "names: [OSL, HAS, HDR]"))
    attributes = edited / "attributes.yaml"
    attributes.write_text(
        attributes.read_text(encoding="utf-8").replace(
            "values: [retail, professional]", "values: [retail, professional, institutional]"
        )
        + "\n  - name: kyc_level\n    description: How far the holder was verified.\n    values: [basic, full]\n",
        encoding="utf-8",
    )
    return edited


def test_the_text_report_a_reviewer_signs(tmp_path: Path):
    """Issue 20, finding 5: example requests in the text, sections for catalog values and attribute declarations
    added or changed, a group stated by its changed condition only, a fixed related type named as written."""
    edited = _signed_off_edit(tmp_path)
    result = permctl("rules", "diff", str(BROKER_POLICIES), str(edited))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    warned = lines.index("  otc-open-warning -> -: 8 input(s)")
    assert lines[warned + 1] == "      types: otc.US"
    assert lines[warned + 2].endswith("; attributes.residency: DE, FR")  # investor_class is not what changed
    assert "investor_class" not in lines[warned + 2]
    examples = lines[warned + 3 : warned + 5]  # one per value the group restricts
    assert examples[0].startswith("      e.g. [0] otc.US open; open before: none; ")
    assert "residency=DE" in examples[0] and "residency=FR" in examples[1]
    assert not lines[warned + 5].startswith("      e.g. ")
    groups = [i for i, line in enumerate(lines) if line.startswith("  ") and line.endswith(" input(s)")]
    for start, end in zip(groups, [*groups[1:], len(lines)], strict=True):
        shown = [line for line in lines[start:end] if line.startswith("      e.g. ")]
        assert 1 <= len(shown) <= 3, lines[start]
    assert "      related: account.withdraw close->open, account.withdraw open->open" in lines
    assert "<same product>" not in result.stdout
    assert lines[lines.index("catalog values added: 1") + 1] == "  va.HDR"
    assert lines[lines.index("attributes added: 1") + 1] == "  kyc_level: values 'basic', 'full'"
    changed = lines.index("attribute declarations changed: 1")
    assert lines[changed + 1] == "  investor_class: values added 'institutional'"

    code, report = _json(str(BROKER_POLICIES), str(edited))
    assert code == 1
    assert report["catalog"] == {"added": ["va.HDR"], "removed": []}
    assert report["attributes"]["added"] == [{"name": "kyc_level", "values": ["basic", "full"], "pattern": None}]
    (group,) = [g for g in report["groups"] if g["old"] == "otc-open-warning"]
    assert "attributes.investor_class" not in group and group["attributes.residency"] == "DE, FR"
