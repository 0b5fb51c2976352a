"""Queries the service needs, one small class per aggregate, all working inside a given Session."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.persistence.models import (
    AcceptedSignature,
    Account,
    AccountPermission,
    Credential,
    IdempotencyKey,
    PermissionAudit,
    RecordedDecision,
    RulesReload,
    Tenant,
    TenantConfig,
)


@dataclass(frozen=True)
class AccountRecord:
    """What the service needs of an account, plus its tenant's config version."""

    id: int
    tenant_id: str
    account_no: str
    status: str
    config_version: int


@dataclass(frozen=True)
class StoredPermission:
    """One stored permission."""

    permission_type: str
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class CredentialRecord:
    """A credential as authentication needs it."""

    app_key: str
    tenant_id: str
    app_secret: str
    access_token_sha256: str


def _insert_for(session: Session):  # type: ignore[no-untyped-def]
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


class Accounts:
    """Accounts, looked up within one tenant."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, *, tenant_id: str, account_no: str, lock: bool) -> AccountRecord | None:
        """The account with its tenant's config version; lock=True holds its row until commit."""
        query = (
            select(Account.id, Account.tenant_id, Account.origin_id, Account.status, Tenant.config_version)
            .join(Tenant, Tenant.id == Account.tenant_id)
            .where(Account.tenant_id == tenant_id, Account.origin_id == account_no)
        )
        if lock:
            query = query.with_for_update(of=Account)
        row = self.session.execute(query).one_or_none()
        return None if row is None else AccountRecord(*row)


class Permissions:
    """Stored permission statuses of accounts."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def of(self, account_id: int) -> dict[str, StoredPermission]:
        """Every stored permission of the account, by permission_type."""
        rows = self.session.execute(
            select(AccountPermission.permission_type, AccountPermission.status, AccountPermission.updated_at)
            .where(AccountPermission.account_id == account_id)
        ).all()
        return {row[0]: StoredPermission(*row) for row in rows}

    def set_many(self, account_id: int, statuses: Sequence[tuple[str, str]], at: datetime) -> None:
        """Upsert each (permission_type, status) in one statement."""
        if not statuses:
            return
        insert = _insert_for(self.session)
        stmt = insert(AccountPermission).values(
            [{"account_id": account_id, "permission_type": t, "status": s, "updated_at": at} for t, s in statuses]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "permission_type"],
            set_={"status": stmt.excluded.status, "updated_at": stmt.excluded.updated_at},
        )
        self.session.execute(stmt)


class AuditTrail:
    """The append-only audit of applied changes."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, rows: Iterable[dict[str, object]]) -> None:
        """Insert audit rows in one statement."""
        rows = list(rows)
        if rows:
            self.session.execute(PermissionAudit.__table__.insert(), rows)

    def of_account(self, *, tenant_id: str | None, account_no: str) -> list[PermissionAudit]:
        """The account's audit rows, oldest first."""
        query = select(PermissionAudit).where(PermissionAudit.account_no == account_no)
        if tenant_id is not None:
            query = query.where(PermissionAudit.tenant_id == tenant_id)
        return list(self.session.scalars(query.order_by(PermissionAudit.id)))


class Credentials:
    """App keys and the tenants they belong to."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, app_key: str) -> CredentialRecord | None:
        """The credential for app_key, if any."""
        row = self.session.execute(
            select(Credential.app_key, Credential.tenant_id, Credential.app_secret, Credential.access_token_sha256)
            .where(Credential.app_key == app_key)
        ).one_or_none()
        return None if row is None else CredentialRecord(*row)


class TenantConfigs:
    """Tenants' SaaS configs as stored."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def patterns(self, tenant_id: str) -> tuple[str, ...] | None:
        """The tenant's enabled patterns, or None when it has no config."""
        raw = self.session.scalar(select(TenantConfig.enabled_patterns).where(TenantConfig.tenant_id == tenant_id))
        return None if raw is None else tuple(json.loads(raw))


class Signatures:
    """Signatures of accepted POSTs, kept for the replay window."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, *, app_key: str, signature: str, expires_at: datetime) -> bool:
        """Record a signature; False when it was already recorded (a replay)."""
        insert = _insert_for(self.session)
        stmt = insert(AcceptedSignature).values(app_key=app_key, signature=signature, expires_at=expires_at)
        inserted = self.session.execute(stmt.on_conflict_do_nothing().returning(AcceptedSignature.signature))
        return inserted.first() is not None

    def forget_expired(self, now: datetime) -> None:
        """Drop signatures whose window has passed."""
        self.session.execute(delete(AcceptedSignature).where(AcceptedSignature.expires_at < now))


class Decisions:
    """Recorded decisions: what reached the rules, the state it met, and the outcome."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, **fields: object) -> None:
        """Append one decision."""
        self.session.execute(RecordedDecision.__table__.insert(), [fields])

    def since(self, when: datetime | None) -> list[RecordedDecision]:
        """Decisions recorded at or after when (all when None), oldest first."""
        query = select(RecordedDecision)
        if when is not None:
            query = query.where(RecordedDecision.created_at >= when)
        return list(self.session.scalars(query.order_by(RecordedDecision.id)))


class RulesReloads:
    """The reload counter that `permctl rules reload` moves."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def generation(self) -> int:
        """The current reload generation (0 when never asked)."""
        return self.session.scalar(select(RulesReload.generation).where(RulesReload.id == 1)) or 0

    def request(self, at: datetime) -> int:
        """Ask every worker to reload; returns the new generation."""
        moved = self.session.execute(
            update(RulesReload).where(RulesReload.id == 1).values(generation=RulesReload.generation + 1,
                                                                   requested_at=at)
        )
        if moved.rowcount == 0:  # type: ignore[attr-defined]
            self.session.add(RulesReload(id=1, generation=1, requested_at=at))
            self.session.flush()
        return self.generation()


@dataclass(frozen=True)
class StoredKey:
    """An idempotency key as stored: the request fingerprint and (once answered) the answer as JSON."""

    request_sha256: str
    http_status: int | None
    response: str | None


class IdempotencyKeys:
    """Tenants' idempotency keys, written in the same transaction as the work they guard."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, *, tenant_id: str, key: str, request_sha256: str, now: datetime,
              expires_at: datetime) -> StoredKey | None:
        """Take the key for this request (None), or return what is stored under it.

        On PostgreSQL a concurrent claim of the same key waits here until the first transaction ends.
        An expired key is taken over as if it were new.
        """
        insert = _insert_for(self.session)
        stmt = insert(IdempotencyKey).values(tenant_id=tenant_id, idempotency_key=key, request_sha256=request_sha256,
                                             created_at=now, expires_at=expires_at)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "idempotency_key"],
            set_={"request_sha256": stmt.excluded.request_sha256, "http_status": None, "response": None,
                  "created_at": stmt.excluded.created_at, "expires_at": stmt.excluded.expires_at},
            where=IdempotencyKey.expires_at < now,
        ).returning(IdempotencyKey.tenant_id)
        if self.session.execute(stmt).first() is not None:
            return None
        row = self.session.execute(
            select(IdempotencyKey.request_sha256, IdempotencyKey.http_status, IdempotencyKey.response)
            .where(IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.idempotency_key == key)
        ).one()
        return StoredKey(*row)

    def answer(self, *, tenant_id: str, key: str, http_status: int, response: str) -> None:
        """Store the answer the claimed key's request got."""
        self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.idempotency_key == key)
            .values(http_status=http_status, response=response)
        )

    def forget_expired(self, now: datetime) -> None:
        """Drop keys older than their retention."""
        self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))
