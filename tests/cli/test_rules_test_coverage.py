"""permctl rules test: expect.message / expect.warnings, --coverage and --min-coverage (issue 12, acceptance 3)."""

from __future__ import annotations

import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.cli.runner import invoke as permctl
from tests.support import copy_rules

RIGHT = "changes[0].permission_status 'open': the permission is already open"


def _with_cases(tmp_path: Path, cases: str, policies: str | None = None) -> Path:
    rules = copy_rules(tmp_path)
    (rules / "cases" / "messages.yaml").write_text(textwrap.dedent(cases), encoding="utf-8")
    if policies is not None:
        (rules / "policies.yaml").write_text(textwrap.dedent(policies), encoding="utf-8")
    return rules


def test_a_wrong_expected_message_fails_naming_both_texts(tmp_path: Path):
    rules = _with_cases(
        tmp_path,
        f"""
        cases:
          - name: the caller reads the exact message
            account: {{stock.HK: open}}
            changes: [{{permission_type: stock.HK, permission_status: open}}]
            expect:
              code: NO_STATE_CHANGE
              failure_index: 0
              rule_id: must-change-state
              message: "{RIGHT}"
          - name: a wrong message fails
            account: {{stock.HK: open}}
            changes: [{{permission_type: stock.HK, permission_status: open}}]
            expect:
              code: NO_STATE_CHANGE
              failure_index: 0
              rule_id: must-change-state
              message: "changes[0].permission_status 'open': already open"
        """,
    )
    report = tmp_path / "report.xml"
    result = permctl("rules", "test", "--rules", str(rules), "--junit", str(report))
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1].endswith(" passed, 1 failed")
    expected_line = f"expected message 'changes[0].permission_status 'open': already open', got '{RIGHT}'"
    assert re.search(r"PASS  .*messages.yaml:\d+  the caller reads the exact message", result.stdout)
    assert re.search(
        r"FAIL  .*messages.yaml:\d+  a wrong message fails\n      " + re.escape(expected_line), result.stdout
    )
    failures = ET.parse(report).getroot().findall("testcase/failure")
    assert [f.get("message") for f in failures] == [expected_line]


def test_expected_warnings_are_compared_in_order(tmp_path: Path):
    rules = _with_cases(
        tmp_path,
        """
        cases:
          - name: the warning is listed
            changes: [{permission_type: stock.US, permission_status: open}]
            expect: {code: SUCCESS, warnings: [us-reminder]}
          - name: no warning is expected but one comes
            changes: [{permission_type: stock.US, permission_status: open}]
            expect: {code: SUCCESS, warnings: []}
        """,
        policies="""
        policies:
          - id: us-reminder
            description: A reminder.
            enforcement: warn
            when: {change: {market: US, permission_status: open}}
            message: remember the W-8BEN
        """,
    )
    result = permctl("rules", "test", "--rules", str(rules))
    assert result.returncode == 1
    assert "      expected no warnings, got warnings 'us-reminder'" in result.stdout
    assert result.stdout.count("FAIL  ") == 1


SHADOWING = """
policies:
  - id: no-ipo
    description: Every US IPO change, opening or closing (the shipped cases name none).
    when: {change: {product: ipo, market: US}}
    message: IPO subscriptions are not offered
  - id: no-us-ipo
    description: Covered by no-ipo on US (lint would refuse a rule covered everywhere); no case opens ipo.HK.
    when: {change: {permission_type: [ipo.US, ipo.HK], permission_status: open}}
    message: US IPO subscriptions are not offered
"""
SHADOW_CASES = """
cases:
  - name: a US IPO subscription is refused
    changes: [{permission_type: ipo.US, permission_status: open}]
    expect: {code: PERMISSION_POLICY_DENIED, failure_index: 0, rule_id: no-ipo}
"""


def _table(stdout: str) -> dict[str, tuple[str, str]]:
    rows = re.findall(r"^(\S+)\s+(yes|NO)\s+(yes|NO)$", stdout, re.MULTILINE)
    return {rule: (fired, passed) for rule, fired, passed in rows}


def test_coverage_of_the_shipped_rules_is_complete(tmp_path: Path):
    report = tmp_path / "report.xml"
    result = permctl("rules", "test", "--coverage", "--min-coverage", "100", "--junit", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    table = _table(result.stdout)
    assert len(table) == 10 and set(table.values()) == {("yes", "yes")}
    assert "coverage 100.0%: 10/10 rules fired, 10/10 rules passed" in result.stdout
    properties = {p.get("name"): p.get("value") for p in ET.parse(report).getroot().findall("properties/property")}
    assert properties["coverage_percent"] == "100.0"
    assert properties["coverage:must-change-state"] == "fired=yes passed=yes"


def test_a_rule_no_case_makes_fire_is_named_and_the_threshold_fails_the_run(tmp_path: Path):
    rules = _with_cases(tmp_path, SHADOW_CASES, SHADOWING)
    report = tmp_path / "report.xml"
    result = permctl(
        "rules", "test", "--rules", str(rules), "--coverage", "--min-coverage", "99", "--junit", str(report)
    )
    assert result.returncode == 1
    assert "0 failed" in result.stdout  # every case passes: only the coverage fails the run
    table = _table(result.stdout)
    assert table["no-ipo"] == ("yes", "yes")  # the other shipped cases reach it and it lets them pass
    assert table["no-us-ipo"] == ("NO", "yes")
    assert (
        "warning: no case makes rule 'no-us-ipo' fire (it holds in some case, but an earlier rule always decides first)"
    ) in result.stdout
    summary = re.search(r"^coverage (\d+\.\d)%: (\d+)/12 rules fired, (\d+)/12 rules passed$", result.stdout, re.M)
    assert summary is not None
    fired, passed = int(summary.group(2)), int(summary.group(3))
    assert (fired, passed) == (11, 12)
    assert summary.group(1) == "95.8"  # 23 of 24
    assert result.stderr.strip().splitlines() == ["Error: rule coverage 95.8% is below --min-coverage 99%"]
    properties = {p.get("name"): p.get("value") for p in ET.parse(report).getroot().findall("properties/property")}
    assert properties["coverage:no-us-ipo"] == "fired=no passed=yes"
    passing = permctl("rules", "test", "--rules", str(rules), "--min-coverage", "95.8")
    assert passing.returncode == 0, passing.stderr
    assert "coverage 95.8%: 11/12 rules fired, 12/12 rules passed" in passing.stdout
    assert "no-us-ipo  NO" not in passing.stdout  # the table only with --coverage


def test_min_coverage_out_of_range_is_a_usage_error():
    result = permctl("rules", "test", "--min-coverage", "101")
    assert result.returncode == 2
    assert "--min-coverage" in result.stderr and "Traceback" not in result.stderr
