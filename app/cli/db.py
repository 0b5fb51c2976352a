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
    """Create or migrate the schema of DATABASE_URL with Alembic; prints the revision it is at then.

    At the head revision, when no rule set is published yet, it adopts the set this host runs today as the first
    published version (RULES_DIR when it passes the go-live gate, else the host's last good snapshot under
    INSTANCE_DIR) and says so in one more line; from then on a set goes live only by `permctl rules publish`.

    Only forward: a --revision behind the database's is refused. An unknown revision or an unreachable
    database is reported in one line (see app/cli/errors.py).

    \b
    Example:
      DATABASE_URL=postgresql://postgres@127.0.0.1/test permctl db upgrade
    """
    from app.container import schema_head
    from app.container import upgrade_schema as alembic_upgrade
    from app.errors import MigrationRefused

    try:
        now = alembic_upgrade(settings().database_url, revision)
    except ImportError as exc:  # e.g. mysql://: a database this service has no driver for
        raise click.ClickException(no_driver(exc)) from exc
    except MigrationRefused as exc:
        raise click.ClickException(f"migration: {exc}") from exc
    click.echo(f"database is at revision {now}" if now else "database has no schema (revision base)")
    if now is not None and now == schema_head():
        from app.cli.publication import adopt_running_set

        click.echo(adopt_running_set(settings()))


@db.command()
@click.option(
    "--decisions-older-than",
    "days",
    type=click.FloatRange(min=0),
    default=None,
    metavar="DAYS",
    help="Also delete recorded decisions older than this many days (rules impact replays what is kept).",
)
def prune(days: float | None) -> None:
    """Delete expired replay records and idempotency keys, and decisions older than --decisions-older-than.

    Works in batches of 1,000 rows, each its own short transaction, so it never holds long locks and can run
    while the service serves (e.g. nightly from cron). Audit rows are never deleted.

    \b
    Example:
      permctl db prune --decisions-older-than 90
    """
    from app.cli.context import unit_of_work
    from app.service.retention import prune as prune_rows

    units = unit_of_work(settings())
    pruned = prune_rows(lambda: units(write=True), decisions_older_than_days=days)
    kept = "" if days is not None else " (decisions kept: give --decisions-older-than DAYS to prune them)"
    click.echo(
        f"pruned {pruned.decisions} decisions, {pruned.signatures} expired replay records and "
        f"{pruned.idempotency_keys} expired idempotency keys{kept}"
    )
