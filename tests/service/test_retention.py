"""permctl db prune: old decisions, expired replay records and idempotency keys go, in short batches; the rest
(and every audit row) stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.persistence.db import make_engine, make_session_factory
from app.persistence.models import AcceptedSignature, IdempotencyKey, RecordedDecision
from app.persistence.repositories import CredentialRecord
from app.persistence.unit_of_work import UnitOfWork
from app.service import retention
from app.settings import Settings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _decision(n: int, at: datetime) -> dict[str, object]:
    return {
        "trace_id": f"t{n}",
        "tenant_id": "sg_mexc",
        "account_no": "ACC-1",
        "rule_set_version": "v1",
        "changes": "[]",
        "tenant_patterns": "[]",
        "account_state": "{}",
        "created_at": at,
        "code": 0,
        "failure_index": 0,
        "rule_id": None,
    }


def _count(factory, model) -> int:  # type: ignore[no-untyped-def]
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


@pytest.fixture
def factory(settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(settings, request_path=False)
    yield make_session_factory(engine)
    engine.dispose()


def test_prune_removes_only_what_is_old_or_expired_in_batches(factory, monkeypatch: pytest.MonkeyPatch):
    with UnitOfWork(factory, write=True) as uow:
        uow.tenants.add("t", NOW)
        uow.credentials.put(CredentialRecord("k", "t", "secret", "0" * 64), NOW)
        signed_by_k = {"app_key": "k", "tenant_id": "t", "credentials_version": 1}
        for n in range(25):
            uow.decisions.record(**_decision(n, NOW - timedelta(days=100, minutes=n)))
        for n in range(25, 30):
            uow.decisions.record(**_decision(n, NOW - timedelta(days=10)))
        for n in range(12):
            uow.signatures.record(signature=f"old{n:02d}", expires_at=NOW - timedelta(seconds=1), **signed_by_k)
        uow.signatures.record(signature="live", expires_at=NOW + timedelta(seconds=300), **signed_by_k)
        uow.commit()
    monkeypatch.setattr(retention, "BATCH", 10)  # 25 old decisions: batches of 10, 10 and 5
    transactions = []
    real = UnitOfWork

    def counting() -> UnitOfWork:
        transactions.append(1)
        return real(factory, write=True)

    pruned = retention.prune(counting, decisions_older_than_days=90, now=NOW)
    assert (pruned.decisions, pruned.signatures, pruned.idempotency_keys) == (25, 12, 0)
    assert _count(factory, RecordedDecision) == 5
    assert _count(factory, AcceptedSignature) == 1
    assert len(transactions) == 3 + 2 + 1  # each batch its own short transaction


def test_without_a_cut_off_decisions_are_kept(factory):
    with UnitOfWork(factory, write=True) as uow:
        uow.decisions.record(**_decision(1, NOW - timedelta(days=1000)))
        uow.commit()
    pruned = retention.prune(lambda: UnitOfWork(factory, write=True), decisions_older_than_days=None, now=NOW)
    assert pruned.decisions == 0 and _count(factory, RecordedDecision) == 1


def test_expired_idempotency_keys_go_and_live_ones_stay(factory):
    with factory() as session:
        for key, expires in (("old", NOW - timedelta(hours=1)), ("live", NOW + timedelta(hours=1))):
            session.add(
                IdempotencyKey(
                    tenant_id="sg_mexc",
                    idempotency_key=key,
                    request_sha256="0" * 64,
                    created_at=NOW - timedelta(hours=24),
                    expires_at=expires,
                )
            )
        session.commit()
    pruned = retention.prune(lambda: UnitOfWork(factory, write=True), decisions_older_than_days=None, now=NOW)
    assert pruned.idempotency_keys == 1
    with factory() as session:
        assert list(session.scalars(select(IdempotencyKey.idempotency_key))) == ["live"]


def test_permctl_db_prune_says_what_it_removed(settings: Settings, factory):
    from tests.cli.runner import db_env, invoke, ok

    with UnitOfWork(factory, write=True) as uow:
        uow.decisions.record(**_decision(1, datetime.now(UTC) - timedelta(days=40)))
        uow.decisions.record(**_decision(2, datetime.now(UTC)))
        uow.commit()
    out = ok(invoke("db", "prune", "--decisions-older-than", "30", env=db_env(settings)))
    assert out.strip() == "pruned 1 decisions, 0 expired replay records and 0 expired idempotency keys"
    assert _count(factory, RecordedDecision) == 1
    out = ok(invoke("db", "prune", env=db_env(settings)))
    assert "decisions kept: give --decisions-older-than DAYS" in out
