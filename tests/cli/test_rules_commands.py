"""permctl rules lint / test / explain through the real entry point (SPEC §7, issue 3)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support import copy_rules, permctl

pytestmark = pytest.mark.e2e


def test_shipped_rules_lint_clean_and_print_the_version():
    result = permctl("rules", "lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "clean" in result.stdout and "rule-set version" in result.stdout


def test_rules_test_passes_forty_cases_and_writes_junit(tmp_path: Path):
    report = tmp_path / "rules.xml"
    result = permctl("rules", "test", "--junit", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    passed, failed = (int(part.split()[0]) for part in last.split(", "))
    assert failed == 0 and passed >= 40
    assert "warning: no case" not in result.stdout  # every rule is exercised
    suite = ET.parse(report).getroot()
    cases = suite.findall("testcase")
    assert len(cases) == passed == int(suite.get("tests"))
    assert not suite.findall("testcase/failure")
    assert all(case.get("name") for case in cases)


def test_a_failing_case_fails_the_run_and_the_report(tmp_path: Path):
    rules = copy_rules(tmp_path)
    cases = rules / "cases" / "ordering.yaml"
    text = cases.read_text()
    cases.write_text(text.replace("failure_index: 2, rule_id: no-duplicate-type",
                                  "failure_index: 1, rule_id: no-duplicate-type", 1))
    report = tmp_path / "rules.xml"
    result = permctl("rules", "test", "--rules", str(rules), "--junit", str(report))
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1].endswith("1 failed")
    assert "FAIL  rules/cases/ordering.yaml:" in result.stdout
    failures = ET.parse(report).getroot().findall("testcase/failure")
    assert len(failures) == 1 and "expected" in failures[0].get("message")


def test_rules_no_case_exercises_are_reported(tmp_path: Path):
    rules = copy_rules(tmp_path)
    for path in (rules / "cases").glob("*.yaml"):
        if path.name != "catalog.yaml":
            path.unlink()
    result = permctl("rules", "test", "--rules", str(rules))
    assert result.returncode == 0
    assert "warning: no case makes rule 'type-banned-group' fire" in result.stdout


def _garbage_targets() -> list[str]:
    root = Path(__file__).resolve().parents[2] / "rules"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


@pytest.mark.parametrize("relative", _garbage_targets())
def test_garbage_in_any_rules_file_is_named_with_its_line(tmp_path: Path, relative: str):
    rules = copy_rules(tmp_path)
    path = rules / relative
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "  - : ][ {garbage"]) + "\n")
    result = permctl("rules", "lint", "--rules", str(rules))
    assert result.returncode != 0
    located = [line for line in result.stdout.splitlines() if line.startswith(f"rules/{relative}:")]
    assert located, result.stdout
    line_no = int(located[0].split(":")[1])
    assert len(lines) - 1 <= line_no <= len(lines) + 1  # the appended line (or where the parser noticed it)


SEMANTIC_MISTAKES = [
    ("validation.yaml", "    outcome: NO_STATE_CHANGE\n", "    outcome: NO_SUCH_CODE\n", "unknown outcome"),
    ("validation.yaml", "  - id: status-required\n", "  - id: type-required\n", "duplicate rule id"),
    ("validation.yaml", "    message: is required\n", "    message: is required {colour}\n", "unknown placeholder"),
    ("validation.yaml", "{fact: named_earlier, equals: true}", "{fact: named_before, equals: true}", "unknown fact"),
    ("validation.yaml", "    field: permission_status\n", "    field: 7\n", "'field'"),
    ("validation.yaml", "    description: Every change names a permission type.\n",
     "    descripton: Every change names a permission type.\n", "unknown key 'descripton'"),
    ("validation.yaml", "{fact: in_catalog, equals: false}", "{fact: in_catalog, equals: nope}", "true or false"),
    ("catalog.yaml", "markets: [HK, US,", "markets: [HK, HK, US,", "listed twice"),
    ("catalog.yaml", "banned_groups: [flag]", "banned_groups: [flag]\nextra: 1", "unknown key 'extra'"),
    ("cases/ordering.yaml", "rule_id: type-required}", "rule_id: no-such-rule}", "names no rule"),
    ("cases/tenant_config.yaml", "permission_status: open}]\n    expect: {code: SUCCESS}",
     "permission_status: open}]\n    expect: {code: ALL_GOOD}", "unknown code"),
    ("cases/permission_status.yaml", "account: {stock.HK: open}", "account: {stock.KR: open}", "not in the catalog"),
]


@pytest.mark.parametrize(("relative", "old", "new", "complaint"), SEMANTIC_MISTAKES,
                         ids=[m[3] for m in SEMANTIC_MISTAKES])
def test_each_kind_of_mistake_is_named_with_file_and_line(tmp_path: Path, relative: str, old: str, new: str,
                                                          complaint: str):
    rules = copy_rules(tmp_path)
    path = rules / relative
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    changed_line = text[: text.index(old)].count("\n") + 1 + (1 if old.startswith("\n") else 0)
    result = permctl("rules", "lint", "--rules", str(rules))
    assert result.returncode == 1
    matching = [line for line in result.stdout.splitlines() if complaint in line]
    assert matching, result.stdout
    path_part, line_part = matching[0].split(":")[:2]
    assert path_part == f"rules/{relative}"
    assert abs(int(line_part) - changed_line) <= 2, (matching[0], changed_line)


def test_explain_shows_every_rule_in_order_for_each_change():
    result = permctl(
        "rules", "explain", "--enable", "stock.*", "--state", "stock.HK=open", "--data",
        '{"account_no":"A1","changes":[{"permission_type":"stock.US","permission_status":"open"},'
        '{"permission_type":"stock.HK","permission_status":"open"},'
        '{"permission_type":"flag.options","permission_status":"open"}]}',
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    blocks = out.split("\nchanges[")[1:]
    assert len(blocks) == 3
    from app.rules.loader import load_rule_set
    from tests.support import SHIPPED_RULES

    rule_ids = [r.id for r in load_rule_set(SHIPPED_RULES).rules]
    for block in blocks:
        shown = [m.group(1) for m in re.finditer(r"^\s+\d+\. (\S+)", block, re.MULTILINE)]
        assert shown == rule_ids  # every rule, in file order
    assert "=> accepted" in blocks[0]
    assert "must-change-state          FIRES  <- decides" in blocks[1]
    assert "type-banned-group          FIRES  <- decides" in blocks[2]
    assert out.strip().endswith("request: NO_STATE_CHANGE at changes[1] by must-change-state")
