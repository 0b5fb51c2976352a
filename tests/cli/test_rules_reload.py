"""permctl rules reload asks the workers only for a set they would take (issue 12, acceptance 5)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.runner import invoke as permctl
from tests.cli.runner import scalar
from tests.support import FAILING_CASE, FREEZE, FREEZE_REFUSING_CLOSES, copy_rules


def _generation(database_url: str) -> int:
    return scalar(database_url, "SELECT coalesce(max(generation), 0) FROM rules_reloads")


def _reload(database_url: str, rules: Path) -> tuple[int, str, str]:
    result = permctl("rules", "reload", env={"DATABASE_URL": database_url, "RULES_DIR": str(rules)})
    return result.returncode, result.stdout, result.stderr


def test_a_set_whose_cases_fail_is_refused_with_the_cases_and_nothing_is_asked(database_url: str, tmp_path: Path):
    live = copy_rules(tmp_path / "live")
    (live / "policies.yaml").write_text(FREEZE_REFUSING_CLOSES, encoding="utf-8")

    code, stdout, stderr = _reload(database_url, live)
    assert code == 1 and stdout == ""
    assert "Traceback" not in stderr
    # lint's warnings (this set's freeze refuses closes) are shown too; the refusal is for the failing case
    assert [line for line in stderr.strip().splitlines() if ": warning: " not in line] == [
        f"{live}/cases/catalog.yaml:38:1: {FAILING_CASE}: case fails: "
        "expected success, got PERMISSION_POLICY_DENIED (400106) at change 0 by 'otc-freeze'",
        f"Error: {live}: 1 regression case(s) fail: reload not requested; running workers keep their rule set",
    ]
    assert _generation(database_url) == 0  # no worker was asked to reload

    (live / "policies.yaml").write_text(FREEZE, encoding="utf-8")
    code, stdout, stderr = _reload(database_url, live)
    assert code == 0, stderr
    assert "reload requested (generation 1)" in stdout
    assert _generation(database_url) == 1


def test_a_set_that_does_not_lint_is_refused_and_nothing_is_asked(database_url: str, tmp_path: Path):
    live = copy_rules(tmp_path / "live")
    validation = live / "validation.yaml"
    validation.write_text(validation.read_text(encoding="utf-8") + "\n  - id: [broken\n", encoding="utf-8")

    code, stdout, stderr = _reload(database_url, live)
    assert code == 1 and stdout == ""
    lines = stderr.strip().splitlines()
    assert lines[0].startswith(f"{live}/validation.yaml:") and "YAML syntax" in lines[0]
    assert lines[-1] == f"Error: {live} does not lint clean: reload not requested; running workers keep their rule set"
    assert _generation(database_url) == 0
