"""The unit of work: what it commits, when others see it, and that a pooled connection comes back clean."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import sessionmaker

from app.persistence.db import make_session_factory
from app.persistence.models import AcceptedSignature
from app.persistence.repositories import CredentialRecord, SignatureRecorded
from app.persistence.unit_of_work import UnitOfWork
from tests.conftest import postgres_only


@pytest.fixture
def observer(database_url: str) -> Iterator[Engine]:
    """A separate engine: sees only what the unit of work has committed."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _visible(observer: Engine, signature: str) -> bool:
    with observer.connect() as conn:
        return bool(
            conn.scalar(
                select(func.count()).select_from(AcceptedSignature).where(AcceptedSignature.signature == signature)
            )
        )


@pytest.fixture(autouse=True)
def credential(engine: Engine) -> None:
    """App key k of tenant t: a signature is recorded only for a credential that exists."""
    with UnitOfWork(make_session_factory(engine), write=True) as uow:
        uow.tenants.add("t", datetime.now(UTC))
        uow.credentials.put(CredentialRecord("k", "t", "secret", "0" * 64), datetime.now(UTC))
        uow.commit()


def _record(uow: UnitOfWork, signature: str) -> bool:
    recorded = uow.signatures.record(
        app_key="k",
        signature=signature,
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
        tenant_id="t",
        credentials_version=1,  # moved once, by the credential's creation
    )
    assert recorded is not SignatureRecorded.STALE_CREDENTIAL
    return recorded is SignatureRecorded.FIRST_USE


def test_a_signature_of_a_changed_or_revoked_credential_is_not_recorded(engine: Engine, observer: Engine):
    factory: sessionmaker[Any] = make_session_factory(engine)
    with UnitOfWork(factory, write=True) as uow:
        assert uow.credentials.version("t") == 1
        uow.credentials.put(CredentialRecord("k", "t", "rotated", "1" * 64), datetime.now(UTC))
        assert uow.credentials.version("t") == 2
        stale = {"expires_at": datetime.now(UTC) + timedelta(minutes=10), "tenant_id": "t", "credentials_version": 1}
        assert uow.signatures.record(app_key="k", signature="e" * 64, **stale) is SignatureRecorded.STALE_CREDENTIAL
        current = {**stale, "credentials_version": 2}
        assert uow.signatures.record(app_key="k", signature="e" * 64, **current) is SignatureRecorded.FIRST_USE
        assert uow.credentials.revoke("k", datetime.now(UTC)) is not None
        assert uow.credentials.version("t") == 3
        revoked = {**stale, "credentials_version": 3}
        assert uow.signatures.record(app_key="k", signature="f" * 64, **revoked) is SignatureRecorded.STALE_CREDENTIAL
    assert not _visible(observer, "e" * 64)


def test_nothing_is_seen_or_kept_without_commit(engine: Engine, observer: Engine):
    factory: sessionmaker[Any] = make_session_factory(engine)
    with UnitOfWork(factory, write=True) as uow:
        assert _record(uow, "a" * 64)
        assert not _visible(observer, "a" * 64)
    assert not _visible(observer, "a" * 64)


def test_autocommit_work_stands_and_leaves_the_pooled_connection_transactional(engine: Engine, observer: Engine):
    factory: sessionmaker[Any] = make_session_factory(engine)
    with UnitOfWork(factory, write=True, autocommit=True) as uow:
        assert _record(uow, "b" * 64)
        assert not _record(uow, "b" * 64)  # a replay of the same signature is refused
        uow.commit()
    assert _visible(observer, "b" * 64)
    # The same pooled connection serves the next unit of work: it must be an ordinary transaction again,
    # or a rejected request's writes would persist without a commit.
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    with UnitOfWork(factory, write=True) as uow:
        assert _record(uow, "c" * 64)
        assert not _visible(observer, "c" * 64)
    assert not _visible(observer, "c" * 64)


@pytest.mark.postgres
def test_on_postgresql_autocommit_statements_are_seen_at_once(engine: Engine, observer: Engine, database_url: str):
    """No BEGIN/COMMIT round trips: each statement is committed when it returns."""
    postgres_only(database_url)
    with UnitOfWork(make_session_factory(engine), autocommit=True) as uow:
        assert _record(uow, "d" * 64)
        assert _visible(observer, "d" * 64)
