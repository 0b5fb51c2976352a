"""Issue 12, acceptance 1: one run of lint over one directory holding every planted mistake reports each of
them at its file:line:column with its rule id — a file that does not parse hides nothing in the others."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.rules.tools.lint.directory import lint
from tests.cli.runner import invoke
from tests.rules.planted import Planted, key_of, planted_rules

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# The planted mistakes only an analysis of the whole input space finds (app/rules/tools/lint/semantic.py), each as
# (mistake, rule id, a part of its text, severity), reported where the rule starts. The catch-all at the top
# hides every later policy; lint reports that, then judges the later rules with it set aside, so the shadowed
# rule names the rule that really covers it and the deny rule refusing closes is still found.
SEMANTIC_EXPECTATIONS: list[tuple[str, str, str, str]] = [
    (
        "shadowed rule",
        "ipo-japan-closed",
        "never fires: every change it matches is refused first by 'ipo-closed-markets'",
        "error",
    ),
    ("catch-all at the top", "everything-frozen", "matches every change that reaches it", "error"),
    ("contradictory condition", "us-and-hk-options", "condition can never hold", "error"),
    ("deny rule that refuses closes", "no-warrants", "this rule refuses closing warrant.HK", "warning"),
]


def semantic(rules: Path) -> list[Planted]:
    """SEMANTIC_EXPECTATIONS located in the planted policies.yaml."""
    return [
        Planted(
            mistake, "rules/policies.yaml", *key_of(rules / "policies.yaml", rule_id, "id"), rule_id, says, severity
        )
        for mistake, rule_id, says, severity in SEMANTIC_EXPECTATIONS
    ]


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Planted]]:
    """The planted directory as rules/ under the working directory (problems then name rules/<file>)."""
    monkeypatch.chdir(tmp_path)
    return planted_rules(tmp_path)


def test_one_lint_run_reports_every_planted_mistake_where_it_is(planted):
    rules, expected = planted
    expected = expected + semantic(rules)
    result = lint(rules, now=NOW)
    shown = [str(p) for p in result.problems]
    for mistake in expected:
        hits = [line for line in shown if line.startswith(mistake.prefix) and mistake.says in line]
        assert hits, f"{mistake.mistake}: no {mistake.prefix}…{mistake.says}… in\n" + "\n".join(shown)
    assert result.rule_set is None and not result.clean
    # Each static mistake is reported once, not once per file that could not be read around it.
    for mistake in expected:
        assert sum(line.startswith(mistake.prefix) and mistake.says in line for line in shown) == 1, mistake


def test_the_syntax_error_hides_no_rule_of_its_own_file(planted):
    rules, _ = planted
    result = lint(rules, now=NOW)
    reported = {p.rule_id for p in result.problems if p.path == "rules/policies.yaml"}
    # Rules written after the broken one are read and checked all the same.
    assert {"options-by-prodcut", "hk-options-glob", "no-message", "markt-typo", "account-market"} <= reported


def test_permctl_rules_lint_reports_every_planted_mistake_in_one_run(planted, tmp_path):
    rules, expected = planted
    expected = expected + semantic(rules)
    ran = invoke("rules", "lint", "--rules", "rules", cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    for mistake in expected:
        assert any(line.startswith(mistake.prefix) and mistake.says in line for line in lines), (
            f"{mistake.mistake}: {mistake.prefix}…{mistake.says}…\n{ran.stdout}"
        )
