"""permctl rules lint prints the semantic problems (app/rules/tools/lint/semantic.py) as path:line:col: rule-id: text,
fails on the errors and passes on warnings alone (issue 12)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.runner import invoke as permctl
from tests.cli.runner import ok
from tests.rules.support import rules_dir
from tests.support import PROJECT_ROOT

PLANTED = """
policies:
  - id: catch-all
    description: planted at the top
    when: {change: {permission_status: [open, close]}}
    message: refused
  - id: va-retail
    description: planted below it
    when: {change: {group: va}, account: {investor_class: retail}}
    message: refused
  - id: us-and-hk
    description: contradictory
    when: {all: [{change: {market: US}}, {change: {market: HK}}]}
    message: refused
"""


def test_lint_prints_each_semantic_problem_located_and_fails(tmp_path: Path):
    directory = rules_dir(tmp_path, PLANTED)
    result = permctl("rules", "lint", "--rules", str(directory))
    assert result.returncode == 1
    path = f"{directory}/policies.yaml"
    lines = result.stdout.splitlines()
    assert (
        f"{path}:3:5: catch-all: matches every change that reaches it: it refuses every request; "
        + ("the 2 rule(s) after it can never fire")
        in lines
    )
    assert (
        f"{path}:3:5: catch-all: warning: this rule refuses closing account.trade (and 77 other type(s)): "
        + ("refusing a reduction of risk is rarely intended")
        in lines
    )
    assert f"{path}:7:5: va-retail: never fires: every change it matches is refused first by 'catch-all'" in lines
    assert f"{path}:11:5: us-and-hk: condition can never hold: no change, account, tenant or time matches it" in lines


def test_lint_passes_with_the_close_warning_of_the_example():
    output = ok(permctl("rules", "lint", "--rules", "examples/broker-policies", cwd=PROJECT_ROOT))
    located = "examples/broker-policies/policies.yaml:16:5: stock-close-needs-options-closed: warning: "
    assert located + "this rule refuses closing stock.HK" in output
