"""The unit of work: one transaction; nothing persists unless the caller commits."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.persistence.accounts import AccountAttributes, AccountAuditTrail, Accounts
from app.persistence.repositories import (
    AuditTrail,
    Credentials,
    Decisions,
    IdempotencyKeys,
    Permissions,
    RulesReloads,
    Signatures,
    TenantConfigs,
    Tenants,
)
from app.persistence.retention import Retention


class UnitOfWork:
    """A transaction and the repositories that work in it.

    write=True starts a writer's transaction: on SQLite, BEGIN IMMEDIATE (the database write lock);
    on PostgreSQL an ordinary transaction in which Accounts.get(lock=True) holds the row lock.

    autocommit=True is for work whose every statement stands alone (reading a credential, recording a
    signature): on PostgreSQL each statement commits by itself, which saves the BEGIN and COMMIT round
    trips; SQLite, whose transactions cost no round trip, keeps an ordinary (write=True: IMMEDIATE) one.
    """

    session: Session

    def __init__(self, session_factory: sessionmaker[Any], *, write: bool = False, autocommit: bool = False) -> None:
        self._session_factory = session_factory
        self._write = write
        self._autocommit = autocommit

    def __enter__(self) -> UnitOfWork:
        self.session = self._session_factory()
        if self._autocommit and self.session.get_bind().dialect.name == "postgresql":
            self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        elif self._write:
            self.session.connection(execution_options={"sqlite_immediate": True})
        self.tenants = Tenants(self.session)
        self.accounts = Accounts(self.session)
        self.attributes = AccountAttributes(self.session)
        self.account_audit = AccountAuditTrail(self.session)
        self.permissions = Permissions(self.session)
        self.audit = AuditTrail(self.session)
        self.credentials = Credentials(self.session)
        self.tenant_configs = TenantConfigs(self.session)
        self.signatures = Signatures(self.session)
        self.decisions = Decisions(self.session)
        self.rules_reloads = RulesReloads(self.session)
        self.idempotency_keys = IdempotencyKeys(self.session)
        self.retention = Retention(self.session)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()

    def commit(self) -> None:
        """Commit the transaction."""
        self.session.commit()
