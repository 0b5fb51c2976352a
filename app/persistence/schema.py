"""Which migration the database's schema is at (Alembic's own bookkeeping table)."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session


class Schema:
    """The schema's revision, as /readyz reports it."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def revision(self) -> str | None:
        """The Alembic revision the database is at, or None when it was never migrated."""
        revision: str | None = MigrationContext.configure(self.session.connection()).get_current_revision()
        return revision
