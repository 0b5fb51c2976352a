"""permctl: the one command line of the service.

Importing this package is cheap (click and the command modules only): each command imports SQLAlchemy,
Alembic, Flask or durable_rules inside its function, so `permctl --help` and `permctl call` start fast.
tests/cli/test_startup.py guards that.
"""

from __future__ import annotations

import sys

import click

from app.cli.accounts import accounts
from app.cli.audit import audit
from app.cli.call import call
from app.cli.console import console
from app.cli.db import db
from app.cli.deploy import deploy
from app.cli.errors import Permctl
from app.cli.load import load
from app.cli.rules import rules
from app.cli.serve import serve
from app.cli.tenant import tenant


@click.group(cls=Permctl, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Trade-permission policy service: database, fixtures, accounts, server and its proxy, signed calls, rules
    and their publication, console users, tenants, audit.

    Settings come from DATABASE_URL, REDIS_URL and RULES_DIR.

    \b
    Example:
      permctl db upgrade && permctl load demo/fixtures.yaml && permctl serve
    """


for command in (db, load, accounts, serve, deploy, call, rules, console, tenant, audit):
    cli.add_command(command)


def main() -> None:
    """Entry point of the permctl script."""
    sys.exit(cli.main(prog_name="permctl", standalone_mode=True))
