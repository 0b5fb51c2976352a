"""permctl rules lint / test / explain / impact in-process; reload retired (SPEC §7, issue 3, issue 9 #5 #6 #15)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cli.runner import invoke as permctl
from tests.support import copy_rules


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
    cases.write_text(
        text.replace("failure_index: 2, rule_id: no-duplicate-type", "failure_index: 1, rule_id: no-duplicate-type", 1)
    )
    report = tmp_path / "rules.xml"
    result = permctl("rules", "test", "--rules", str(rules), "--junit", str(report))
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1].endswith("1 failed")
    assert f"FAIL  {rules}/cases/ordering.yaml:" in result.stdout
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
    located = [line for line in result.stdout.splitlines() if line.startswith(f"{rules}/{relative}:")]
    assert located, result.stdout
    line_no = int(located[0].split(":")[1])
    assert len(lines) - 1 <= line_no <= len(lines) + 1  # the appended line (or where the parser noticed it)


SEMANTIC_MISTAKES = [
    ("validation.yaml", "    outcome: NO_STATE_CHANGE\n", "    outcome: NO_SUCH_CODE\n", "unknown outcome"),
    ("validation.yaml", "  - id: status-required\n", "  - id: type-required\n", "duplicate rule id"),
    ("validation.yaml", "    message: is required\n", "    message: is required {colour}\n", "unknown placeholder"),
    ("validation.yaml", "{change: {named_earlier: true}}", "{change: {named_before: true}}", "unknown change field"),
    ("validation.yaml", "    field: permission_status\n", "    field: 7\n", "'field'"),
    (
        "validation.yaml",
        "    description: Every change names a permission type.\n",
        "    descripton: Every change names a permission type.\n",
        "unknown key 'descripton'",
    ),
    ("validation.yaml", "{change: {in_catalog: false}}", "{change: {in_catalog: nope}}", "true or false"),
    ("catalog.yaml", "markets: [HK, US,", "markets: [HK, HK, US,", "listed twice"),
    ("catalog.yaml", "markets: [", "extra: 1\nmarkets: [", "unknown key 'extra'"),
    ("cases/ordering.yaml", "rule_id: type-required}", "rule_id: no-such-rule}", "names no rule"),
    (
        "cases/tenant_config.yaml",
        "permission_status: open}]\n    expect: {code: SUCCESS}",
        "permission_status: open}]\n    expect: {code: ALL_GOOD}",
        "unknown code",
    ),
    ("cases/permission_status.yaml", "account: {stock.HK: open}", "account: {stock.KR: open}", "not in the catalog"),
]


@pytest.mark.parametrize(
    ("relative", "old", "new", "complaint"), SEMANTIC_MISTAKES, ids=[m[3] for m in SEMANTIC_MISTAKES]
)
def test_each_kind_of_mistake_is_named_with_file_and_line(
    tmp_path: Path, relative: str, old: str, new: str, complaint: str
):
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
    assert path_part == f"{rules}/{relative}"
    assert abs(int(line_part) - changed_line) <= 2, (matching[0], changed_line)


def test_explain_verbose_shows_every_rule_in_order_for_each_change():
    result = permctl(
        "rules",
        "explain",
        "--verbose",
        "--enable",
        "stock.*",
        "--state",
        "stock.HK=open",
        "--data",
        '{"account_no":"A1","changes":[{"permission_type":"stock.US","permission_status":"open"},'
        '{"permission_type":"stock.HK","permission_status":"open"},'
        '{"permission_type":"flag.options","permission_status":"open"}]}',
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    blocks = out.split("\nchanges[")[1:]
    assert len(blocks) == 3
    from app.rules.language.loader import load_rule_set
    from tests.support import SHIPPED_RULES

    rule_ids = [r.id for r in load_rule_set(SHIPPED_RULES).rules]
    for block in blocks:
        shown = [m.group(1) for m in re.finditer(r"^\s+\d+\. (\S+)", block, re.MULTILINE)]
        assert shown == rule_ids  # every rule, in file order
    assert "HOLDS" not in blocks[0] and "<- decides" not in blocks[0]
    assert re.search(r"must-change-state\s+HOLDS  <- decides", blocks[1])
    assert 'current_status="open"' in blocks[1]  # the facts the rules read
    # holds, but the service stopped earlier
    assert re.search(
        r"type-banned-group\s+not reached: changes\[1\] decided the request \(its condition holds\)", blocks[2]
    )
    assert out.strip().endswith(
        "answer: code 400103 NO_STATE_CHANGE\n"
        "message: changes[1].permission_status 'open': the permission is already open\n"
        'data: {"failure_index": 1, "rule_id": "must-change-state"}'
    )


# --- issue 9: paths that open, one-line refusals (reload: retired) -------------------------------------------------


def _break(rules: Path) -> int:
    """Put an unknown outcome into rules/validation.yaml; returns its line."""
    path = rules / "validation.yaml"
    text = path.read_text()
    path.write_text(text.replace("outcome: NO_STATE_CHANGE", "outcome: NOT_A_CODE", 1))
    return text[: text.index("outcome: NO_STATE_CHANGE")].count("\n") + 1


@pytest.mark.parametrize("given", ["relative", "absolute"])
def test_lint_prints_the_path_of_the_file_it_read(tmp_path: Path, given: str):
    work = tmp_path / "work"
    copy_rules(work)  # a clean rules/ where the command runs: a path printed as rules/… would open this one
    proposed = copy_rules(tmp_path / "proposed")
    line = _break(proposed)
    argument = "../proposed/rules" if given == "relative" else str(proposed)
    result = permctl("rules", "lint", "--rules", argument, cwd=work)
    assert result.returncode == 1
    problem = next(p for p in result.stdout.splitlines() if "NOT_A_CODE" in p)
    path, line_no = problem.split(":")[:2]
    assert path == f"{argument}/validation.yaml"
    assert int(line_no) == line
    assert "NOT_A_CODE" in (work / path).read_text().splitlines()[line - 1]  # it opens the file that is wrong


def test_lint_under_the_working_directory_prints_relative_paths(tmp_path: Path):
    rules = copy_rules(tmp_path)
    _break(rules)
    result = permctl("rules", "lint", "--rules", str(rules), cwd=tmp_path)
    assert any(p.startswith("rules/validation.yaml:") for p in result.stdout.splitlines()), result.stdout


RETIRED = (
    "Error: rules reload is retired: workers run the version published in the database; store RULES_DIR with "
    "`permctl rules propose --as NAME`, have another approver `permctl rules approve`, then "
    "`permctl rules publish VERSION --as NAME` (docs/deploy.md)"
)


@pytest.mark.parametrize("args", [(), ("--rules", "elsewhere"), ("--anything",)], ids=["bare", "rules", "unknown"])
def test_reload_is_retired_in_one_line_that_says_what_replaces_it_and_moves_nothing(database_url, tmp_path, args):
    from tests.cli.runner import scalar

    live = copy_rules(tmp_path / "live")
    before = scalar(database_url, "SELECT count(*) FROM rule_set_publications")
    result = permctl("rules", "reload", *args, env={"DATABASE_URL": database_url, "RULES_DIR": str(live)})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == RETIRED
    assert scalar(database_url, "SELECT count(*) FROM rule_set_publications") == before


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "no-such-dir" / "x.xml", "no such directory"),
        (lambda tmp: tmp, "is a directory"),
    ],
    ids=["missing-directory", "a-directory"],
)
def test_junit_path_is_checked_before_any_case_runs(tmp_path: Path, make, expected):
    report = make(tmp_path)
    result = permctl("rules", "test", "--junit", str(report))
    assert result.returncode == 1
    assert result.stdout == ""  # no case ran
    assert result.stderr.strip() == f"Error: --junit {report}: {expected}" + (
        f" {report.parent}" if expected == "no such directory" else ""
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["--data", '{"changes": []}'],
        ["--enable", "stock.*"],
        ["--state", "stock.HK=open"],
        ["--attribute", "account_type=margin"],
        ["--at", "2026-01-01"],
    ],
    ids=["data", "enable", "state", "attribute", "at"],
)
def test_explain_refuses_a_case_with_data_of_its_own(extra: list[str]):
    result = permctl("rules", "explain", "--case", "the first failing change wins over a later one", *extra)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: --case explains the case's own request, tenant config and state: give either --case NAME or "
        "--data JSON (with --enable/--state/--attribute/--at), not both"
    ]


def test_impact_since_takes_iso_8601_with_z_or_an_offset(api, seeded):
    from datetime import UTC, datetime, timedelta, timezone

    from tests.support import body_of

    assert api.update(body_of("ACC-1", ("stock.US", "open"))).get_json()["code"] == 0
    env = {"DATABASE_URL": seeded.database_url}
    now = datetime.now(UTC)

    def replayed(since: str) -> int:
        result = permctl("rules", "impact", "--since", since, env=env)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.strip().splitlines()[-1].split()[0])

    assert replayed((now - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")) == 1
    assert replayed((now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")) == 0
    # Half an hour ago, written in UTC+8: read as UTC it would be 7.5 hours ahead and replay nothing.
    east = (now - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=8)))
    assert replayed(east.isoformat(timespec="seconds")) == 1
    assert replayed((now - timedelta(days=1)).strftime("%Y-%m-%d")) == 1
    refused = permctl("rules", "impact", "--since", "last tuesday", env=env)
    assert refused.returncode == 2 and "is not an ISO 8601 time" in refused.stderr


def test_a_junit_report_that_cannot_be_written_after_the_run_is_one_line():
    result = permctl("rules", "test", "--junit", "/dev/full")  # writable, but every write fails (ENOSPC)
    assert result.returncode == 1
    assert "PASS" in result.stdout
    assert result.stderr.strip().splitlines() == ["Error: --junit /dev/full: No space left on device"]


def test_explain_prints_a_change_it_cannot_encode_escaped():
    result = permctl(
        "rules", "explain", "--data", '{"changes":[{"permission_type":"\\ud800x","permission_status":"open"}]}'
    )
    assert result.returncode == 0, result.stderr
    assert '{"permission_type": "\\ud800x", "permission_status": "open"}' in result.stdout


def test_a_missing_rules_dir_is_one_line(tmp_path: Path):
    missing = tmp_path / "nowhere"
    for args in (("rules", "test"), ("rules", "explain", "--case", "x"), ("tenant", "show", "sg_mexc")):
        result = permctl(*args, env={"RULES_DIR": str(missing), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
        assert result.returncode == 1, args
        assert result.stderr.strip().splitlines() == [f"Error: RULES_DIR: '{missing}' does not exist"], args
