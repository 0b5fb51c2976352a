"""permctl rules lint, test, propose and publish refuse a set that edits the contract away; diff still compares it
(issue 20, finding 1; SPEC §7b)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli.publishing import Desk
from tests.cli.runner import invoke as permctl
from tests.cli.runner import one_line_error
from tests.rules.support import BROKER_POLICIES
from tests.rules.tools.test_contract import add_the_flag_group, drop_the_flag_ban

DROPPED = "type-banned-group: the contract's validation 'type-banned-group' is dropped"


def without_the_ban(tmp_path: Path) -> Path:
    """examples/broker-policies without type-banned-group and its case, with the flag group in the catalog."""
    rules = tmp_path / "rules"
    shutil.copytree(BROKER_POLICIES, rules)
    drop_the_flag_ban(rules)
    add_the_flag_group(rules)
    return rules


def test_lint_reports_the_dropped_ban_with_flag_options_at_validation_and_catalog(tmp_path: Path):
    without_the_ban(tmp_path)
    result = permctl("rules", "lint", "--rules", "rules", cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if ": warning: " not in line]
    assert errors[0] == (
        f"rules/validation.yaml:1:1: {DROPPED}: shipped: type-banned-group (INVALID_PERMISSION_TYPE); "
        "this set: pass (no validation refuses); shown by permission_type 'flag.options', permission_status 'open' "
        "(current status 'close', tenant config 'flag.options')"
    )
    assert errors[1].startswith("rules/catalog.yaml:")
    assert "type-banned-group: catalog value 'flag.options' (not in the shipped catalog)" in errors[1]
    assert len(errors) == 2


def test_rules_test_refuses_and_says_why(tmp_path: Path):
    rules = without_the_ban(tmp_path)
    result = permctl("rules", "test", "--rules", str(rules))
    assert result.returncode == 1
    assert "passed" not in result.stdout  # no case is run for a set that cannot go live
    assert DROPPED in result.stderr
    assert f"Error: {rules}: 2 problem(s); run `permctl rules lint --rules {rules}`" in result.stderr


def test_propose_reports_the_breach_and_the_set_never_goes_live(desk: Desk, tmp_path: Path):
    rules = without_the_ban(tmp_path)
    result = desk.acting("carol", "rules", "propose", str(rules))
    assert result.returncode == 1
    lines = [line.strip() for line in result.stdout.splitlines()]
    version = lines[-1]
    assert "contract: 2 breach(es)" in lines
    assert any(line.startswith(f"{rules}/validation.yaml:1:1: {DROPPED}") for line in lines)
    assert desk.proposals()["proposals"][0]["state"] == "broken"
    refused = one_line_error(desk.acting("ann", "rules", "publish", version[:8], "--break-glass", "--reason", "now"))
    assert refused.startswith(f"Error: version {version[:12]} may not go live: validation.yaml:1:1: {DROPPED}")
    assert desk.publications() == 1


def test_diff_still_compares_it_with_the_example(tmp_path: Path):
    rules = without_the_ban(tmp_path)
    result = permctl("rules", "diff", str(BROKER_POLICIES), str(rules))
    assert result.returncode == 1, result.stderr  # differences, not "does not lint clean" (exit 2)
    assert "type-banned-group (INVALID_PERMISSION_TYPE) -> pass" in result.stdout
