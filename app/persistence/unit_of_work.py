"""The unit of work: one transaction; nothing persists unless the caller commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import psycopg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import StorageError
from app.persistence.accounts import AccountAttributes, AccountAuditTrail, Accounts
from app.persistence.console import ConsoleAudit, ConsoleUsers
from app.persistence.decision_state import DecisionStates
from app.persistence.driver import storage_error
from app.persistence.failures import classified
from app.persistence.repositories import (
    AuditTrail,
    Credentials,
    Decisions,
    IdempotencyKeys,
    Permissions,
    Signatures,
    TenantConfigs,
    Tenants,
)
from app.persistence.retention import Retention
from app.persistence.rule_versions import ApprovalPolicy, Proposals, Publications, Reviews, RuleSetVersions
from app.persistence.schema import Schema


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
        try:
            if self._autocommit and self.session.get_bind().dialect.name == "postgresql":
                self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            elif self._write:
                self.session.connection(execution_options={"sqlite_immediate": True})
        except SQLAlchemyError as exc:  # the database cannot be reached: __exit__ will not run
            self.session.close()
            raise as_storage_error(exc) from exc
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
        self.decision_states = DecisionStates(self.session)
        self.rule_versions = RuleSetVersions(self.session)
        self.publications = Publications(self.session)
        self.proposals = Proposals(self.session)
        self.reviews = Reviews(self.session)
        self.approval_policy = ApprovalPolicy(self.session)
        self.console_users = ConsoleUsers(self.session)
        self.console_audit = ConsoleAudit(self.session)
        self.idempotency_keys = IdempotencyKeys(self.session)
        self.retention = Retention(self.session)
        self.schema = Schema(self.session)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        end_session(self.session, exc)

    def commit(self) -> None:
        """Commit the transaction (StorageError when the database refuses it)."""
        with self.writing():
            self.session.commit()

    @contextmanager
    def committing(self) -> Iterator[None]:
        """Run the block's writes, then commit: on PostgreSQL with psycopg, all of it in one round trip.

        There the block runs in psycopg's pipeline mode and a COMMIT is queued after it: the statements and the
        COMMIT go out together and their answers come back at the one Sync that ends the pipeline. SQLAlchemy's
        own commit then finds the transaction over and sends nothing. Only for statements whose results the block
        does not read; a refused statement surfaces at the end, as StorageError. Elsewhere (SQLite) the block
        runs and commits as usual.
        """
        connection = self.session.connection()
        if connection.dialect.driver != "psycopg":
            yield
            self.commit()
            return
        driver = connection.connection.driver_connection
        try:
            with driver.pipeline():  # type: ignore[union-attr]
                yield
                driver.execute("COMMIT")  # type: ignore[union-attr]
        except psycopg.Error as exc:
            raise storage_error(exc) from exc
        self.commit()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Statements whose failure the caller tells apart (a refused write): raised here as StorageError."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise as_storage_error(exc) from exc


def as_storage_error(exc: SQLAlchemyError) -> StorageError:
    """The database library's error as the service layer sees it."""
    original = getattr(exc, "orig", None)
    return classified(type(exc).__name__, original if original is not None else exc)


def end_session(session: Session, exc: BaseException | None) -> None:
    """Roll back what was not committed and give the connection back; a driver error that ended the block is
    raised as the StorageError it is."""
    try:
        session.rollback()
    except SQLAlchemyError:
        pass  # the connection is gone; closing below returns it to the pool, which discards it
    finally:
        session.close()
    if isinstance(exc, SQLAlchemyError):
        raise as_storage_error(exc) from exc
