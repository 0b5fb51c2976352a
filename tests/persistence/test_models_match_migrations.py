"""The typed models and the migrations describe the same schema (warehouse's bin/db-check): a column added to
a model without a migration, or the other way round, fails here on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import app.persistence.models  # noqa: F401  (registers every table on Base.metadata)
from app.persistence.db import Base


def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
