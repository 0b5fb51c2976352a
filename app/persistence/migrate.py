"""Run Alembic migrations programmatically (permctl db upgrade, /readyz and the test fixtures).

The migrations ship inside the package (`app:migrations`), so this works from any directory.
"""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

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


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at database_url to revision."""
    command.upgrade(alembic_config(database_url), revision)
