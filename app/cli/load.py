"""permctl load: fixtures (SPEC §9), every mistake named with its file and line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from app.cli.context import config_cache, rule_set, settings, unit_of_work

if TYPE_CHECKING:
    from app.schemas.fixtures import Problem

PROGRESS_FROM = 500  # accounts; smaller files load too fast for a bar to help
SHOWN_KINDS = {
    "tenants": "tenants",
    "credentials": "credentials",
    "saas_configs": "saas configs",
    "accounts": "accounts",
    "permissions": "permissions",
}


def _read(file: Path) -> Any:
    """The file as ruamel's round-trip data (which knows each value's line), or a one-line error."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    if file.is_dir():
        raise click.ClickException(f"{file}: is a directory; give the fixtures file (e.g. demo/fixtures.yaml)")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise click.ClickException(f"{file}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not valid YAML: the file is not UTF-8 text") from exc
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror or exc}") from exc
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        raise click.ClickException(f"{where}: not valid YAML: {exc.problem or exc.context}") from exc
    except YAMLError as exc:
        first = str(exc).strip().splitlines()
        raise click.ClickException(f"{file}: not valid YAML: {first[0] if first else type(exc).__name__}") from exc


def _line(document: Any, path: tuple[str | int, ...]) -> int:
    """The line of the value at path, or of the nearest enclosing value that has one."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node = document
    line = node.lc.line + 1 if isinstance(node, CommentedMap | CommentedSeq) else 1
    for key in path:
        try:
            if isinstance(node, CommentedMap) and key in node:
                line = node.lc.key(key)[0] + 1
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                line = node.lc.item(key)[0] + 1
            else:
                break
        except (KeyError, TypeError, IndexError):
            break
        node = node[key]
    return line


def _located(file: Path, document: Any, problem: Problem) -> str:
    return f"{file}:{_line(document, problem.path)}: {problem}"


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
def load(file: Path) -> None:
    """Load tenants, credentials, SaaS configs and accounts from a YAML FILE; safe to repeat.

    Checks the whole file first (every unknown key, wrong value and unknown tenant or permission type is
    named with its line) and then loads it in one transaction, or nothing. Prints how many tenants,
    credentials, SaaS configs, accounts and permissions were created, updated or already as listed.
    A revoked app key is never restored (`permctl tenant revoke-key`); the load says so and goes on.

    \b
    Example:
      permctl load demo/fixtures.yaml
    """
    from app.schemas.fixtures import InvalidFixtures, parse_fixtures
    from app.service.fixtures import load_fixtures

    document = _read(file)
    s = settings()
    rules = rule_set(s)
    accounts = document.get("accounts") if isinstance(document, dict) else None
    total = len(accounts) if isinstance(accounts, list) else 0
    try:
        with click.progressbar(
            length=total, label="loading accounts", file=sys.stderr, hidden=total < PROGRESS_FROM
        ) as bar:
            uow, cache = unit_of_work(s), config_cache(s)  # as before: a database error before a file's mistake
            report = load_fixtures(
                parse_fixtures(document),
                unit_of_work=uow,
                cache=cache,
                catalog=rules.catalog,
                rule_set_version=rules.version,
                attributes=rules.attributes,
                progress=bar.update,
            )
    except InvalidFixtures as exc:
        problems = sorted(exc.problems, key=lambda p: _line(document, p.path))
        raise click.ClickException("\n".join(_located(file, document, p) for p in problems)) from exc
    for warning in report.warnings:
        click.echo(f"warning: {_located(file, document, warning)}", err=True)
    click.echo(f"loaded {file}")
    for kind, shown in SHOWN_KINDS.items():
        tally = report[kind]
        revoked = f", {len(report.not_restored)} revoked (not restored)" if kind == "credentials" else ""
        click.echo(
            f"  {shown + ':':<14}{tally.created} created, {tally.updated} updated, "
            f"{tally.unchanged} unchanged{revoked if report.not_restored else ''}"
        )
