"""permctl load: fixtures (SPEC §9)."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from app.cli.context import config_cache, database_error, read_yaml, rule_set, session_factory, settings
from app.errors import DomainError
from app.service.fixtures import load_fixtures

PROGRESS_FROM = 500  # accounts; smaller files load too fast for a bar to help


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
def load(file: Path) -> None:
    """Load tenants, credentials, SaaS configs and accounts from a YAML FILE; safe to repeat.

    \b
    Example:
      permctl load demo/fixtures.yaml
    """
    s = settings()
    document = read_yaml(file)
    rules = rule_set(s)
    accounts = document.get("accounts") if isinstance(document, dict) else None
    total = len(accounts) if isinstance(accounts, list) else 0
    try:
        with click.progressbar(length=total, label="loading accounts", file=click.get_text_stream("stderr"),
                               hidden=total < PROGRESS_FROM) as bar:
            counts = load_fixtures(document, session_factory=session_factory(s), cache=config_cache(s),
                                   catalog=rules.catalog, rule_set_version=rules.version, progress=bar.update)
    except DomainError as exc:
        raise click.ClickException(f"{file}: {exc.message}") from exc
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    click.echo(f"loaded {counts['tenants']} tenants and {counts['accounts']} accounts from {file}")
