"""Which migration the database's schema is at (Alembic's own bookkeeping table)."""

from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session


def schema_revision(session: Session) -> str | None:
    """The Alembic revision the database is at, or None when it was never migrated."""
    return MigrationContext.configure(session.connection()).get_current_revision()
