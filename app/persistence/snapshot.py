"""A read-only unit of work over one consistent snapshot of the database, for reports that read much and write
nothing (`permctl rules audit-state`).

On PostgreSQL its transaction is REPEATABLE READ, READ ONLY: every statement sees the database as the first one
did, and the server refuses any write. On SQLite it is one (deferred) read transaction: the first read takes a
snapshot of the WAL that every later read of the transaction sees, and writers committing meanwhile are not
seen. It never commits: leaving the block rolls back.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.persistence.account_states import AccountStates
from app.persistence.repositories import TenantConfigs, Tenants
from app.persistence.unit_of_work import as_storage_error, end_session

_POSTGRESQL_SNAPSHOT = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}


class ReadOnlySnapshot:
    """One read-only transaction and the repositories that read in it."""

    session: Session

    def __init__(self, session_factory: sessionmaker[Any]) -> None:
        self._session_factory = session_factory

    def __enter__(self) -> ReadOnlySnapshot:
        self.session = self._session_factory()
        try:
            if self.session.get_bind().dialect.name == "postgresql":
                self.session.connection(execution_options=_POSTGRESQL_SNAPSHOT)
            else:
                self.session.connection()  # BEGIN: SQLite's snapshot is taken at the first read
        except SQLAlchemyError as exc:
            self.session.close()
            raise as_storage_error(exc) from exc
        self.account_states = AccountStates(self.session)
        self.tenants = Tenants(self.session)
        self.tenant_configs = TenantConfigs(self.session)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end_session(self.session, exc)
