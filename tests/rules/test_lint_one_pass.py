"""Issue 12, acceptance 1: one run of lint over one directory holding every planted mistake reports each of
them at its file:line:column with its rule id — a file that does not parse hides nothing in the others."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.rules.lint import lint
from tests.cli.runner import invoke
from tests.rules.planted import Planted, planted_rules

NOW = datetime(2026, 6, 1, tzinfo=UTC)

# The four planted mistakes only an analysis of the whole set finds (another change builds it), as data: the
# lead turns them into assertions once it is merged. Each is (mistake, file under rules/, rule id, the key of
# that rule where the problem is expected, a part of its text, severity); the expected line and column are
# tests.rules.planted.key_of(rules / file, rule_id, key), e.g. Planted(mistake, f"rules/{file}",
# *key_of(...), rule_id, says, severity).prefix. The texts are guesses at the analysis' wording. Note that
# the catch-all at the top (everything-frozen, deny) covers every later policy, so an analysis naming "the
# earlier rule" for the shadowed one may name everything-frozen rather than ipo-closed-markets.
SEMANTIC_EXPECTATIONS: list[tuple[str, str, str, str, str, str]] = [
    ("shadowed rule", "policies.yaml", "ipo-japan-closed", "id", "ipo-closed-markets", "error"),
    ("catch-all at the top", "policies.yaml", "everything-frozen", "id", "every", "error"),
    ("contradictory condition", "policies.yaml", "us-and-hk-options", "when", "never", "error"),
    ("deny rule that refuses closes", "policies.yaml", "no-warrants", "id", "refuses closing", "warning"),
]


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Planted]]:
    """The planted directory as rules/ under the working directory (problems then name rules/<file>)."""
    monkeypatch.chdir(tmp_path)
    return planted_rules(tmp_path)


def test_one_lint_run_reports_every_planted_mistake_where_it_is(planted):
    rules, expected = planted
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
    _, expected = planted
    ran = invoke("rules", "lint", "--rules", "rules", cwd=tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    for mistake in expected:
        assert any(line.startswith(mistake.prefix) and mistake.says in line for line in lines), (
            f"{mistake.mistake}: {mistake.prefix}…{mistake.says}…\n{ran.stdout}"
        )
