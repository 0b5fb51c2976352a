"""permctl rules: check the compliance-owned rules/ directory."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli.context import settings
from app.rules.loader import RuleSetInvalid, load_rule_set


@click.group()
def rules() -> None:
    """Rules commands."""


@rules.command()
@click.option("--rules", "rules_dir", type=click.Path(path_type=Path), default=None,
              help="Directory to check (default: RULES_DIR or rules/).")
def lint(rules_dir: Path | None) -> None:
    """Check every file under rules/ and print one line per mistake as path:line:col: rule-id: problem.

    \b
    Example:
      permctl rules lint --rules rules/
    """
    directory = rules_dir or settings().rules_dir
    if not directory.is_dir():
        raise click.ClickException(f"{directory}: no such directory")
    try:
        rule_set = load_rule_set(directory)
    except RuleSetInvalid as exc:
        for problem in exc.problems:
            click.echo(str(problem))
        raise SystemExit(1) from exc
    click.echo(f"{directory}: clean ({len(rule_set.rules)} rules, {len(rule_set.catalog)} catalog values), "
               f"rule-set version {rule_set.version}")
