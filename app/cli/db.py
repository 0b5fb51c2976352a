"""permctl db: schema migrations."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from app.cli.context import database_error, settings
from app.persistence.migrate import upgrade as alembic_upgrade


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

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/test permctl db upgrade
    """
    s = settings()
    try:
        alembic_upgrade(s.database_url, revision)
    except SQLAlchemyError as exc:
        raise database_error(exc) from exc
    click.echo(f"database is at revision {revision}")
