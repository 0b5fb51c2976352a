"""What /readyz asks of the schema: the migration it is at (Alembic's bookkeeping table) and the tables it lacks.

Read with plain statements: Alembic's MigrationContext logs two INFO lines each time it is configured, which a
probe every few seconds would turn into most of the log.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from app.persistence.db import Base

VERSION_TABLE = "alembic_version"


class Schema:
    """The schema's revision and completeness, as /readyz reports them."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def revision(self) -> str | None:
        """The Alembic revision the database is at, or None when it was never migrated."""
        connection = self.session.connection()
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        revision: str | None = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        return revision

    def missing_tables(self) -> list[str]:
        """The tables the service needs that the database does not have (dropped or never created), by name."""
        import app.persistence.models  # noqa: F401 - registers every table on Base.metadata

        present = set(inspect(self.session.connection()).get_table_names())
        return sorted(set(Base.metadata.tables) - present)
