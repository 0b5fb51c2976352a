"""Run Alembic migrations programmatically (permctl db upgrade, /readyz and the test fixtures).

The migrations ship inside the package (`app:migrations`), so this works from any directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from app.errors import MigrationRefused

SCRIPT_LOCATION = "app:migrations"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic Config for the packaged migrations and this database."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if database_url is not None:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    """The revision the code's migrations end at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged migrations have no head"
    return head


def known_revisions() -> frozenset[str]:
    """Every revision the packaged migrations know."""
    return frozenset(s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def _lineage() -> list[str]:
    """The packaged revisions from the first to the head (the migrations are one line, no branches)."""
    return [s.revision for s in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))]


def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None when it was never migrated (an SQLite file not made yet included)."""
    url = make_url(database_url)
    file = url.database if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") else None
    if file is not None and not Path(file).exists():  # connecting would create it (or fail: no directory yet)
        return None
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            revision: str | None = MigrationContext.configure(connection).get_current_revision()
            return revision
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> str | None:
    """Bring the database at database_url forward to revision; the revision it is at afterwards.

    Only forward: a target behind the database's revision (`base` included) is refused with MigrationRefused,
    where Alembic's own upgrade would leave the database as it is and report success. A database at a revision
    this release does not know (migrated by a newer release) is refused too. An unknown target raises Alembic's
    CommandError.
    """
    scripts = ScriptDirectory.from_config(alembic_config())
    found = scripts.get_revisions(revision)
    target = found[0].revision if found else None  # `base`: before the first migration
    lineage = _lineage()
    current = current_revision(database_url)
    if current is not None and current not in lineage:
        raise MigrationRefused(
            f"the database is at revision {current}, which this release does not know (a newer release migrated it)"
        )
    position = {name: index for index, name in enumerate(lineage)}
    if current is not None and (target is None or position[target] < position[current]):
        raise MigrationRefused(
            f"the database is at revision {current}, past {target or 'base'}: permctl db upgrade only goes forward "
            "(to go back, restore a backup taken at that revision)"
        )
    command.upgrade(alembic_config(database_url), revision)
    return current_revision(database_url)
