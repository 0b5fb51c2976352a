"""Alembic environment: the URL comes from the caller (permctl db upgrade), else from Settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from app.persistence.db import make_engine
from app.persistence.models import Base
from app.settings import Settings

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    settings = Settings.from_env()
    url = context.config.get_main_option("sqlalchemy.url") or settings.database_url
    engine = make_engine(settings.with_overrides(database_url=url), request_path=False)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `permctl db upgrade`")
run_migrations_online()
