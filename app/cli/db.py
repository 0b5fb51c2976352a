"""permctl db: schema migrations."""

from __future__ import annotations

import click

from app.cli.context import no_driver, settings


@click.group()
def db() -> None:
    """Database schema commands.

    \b
    Example:
      permctl db upgrade
    """


@db.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to upgrade to.")
def upgrade(revision: str) -> None:
    """Create or migrate the schema of DATABASE_URL with Alembic.

    An unknown revision or an unreachable database is reported in one line (see app/cli/errors.py).

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/test permctl db upgrade
    """
    from app.persistence.migrate import upgrade as alembic_upgrade

    try:
        alembic_upgrade(settings().database_url, revision)
    except ImportError as exc:  # e.g. mysql://: a database this service has no driver for
        raise click.ClickException(no_driver(exc)) from exc
    click.echo(f"database is at revision {revision}")
