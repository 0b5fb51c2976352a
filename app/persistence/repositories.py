"""Queries the service needs, one small class per aggregate, all working inside a given Session.

The statements a request runs are built once, here, as Core statements with bound parameters, and run on
the session's connection: SQLAlchemy then compiles each once per process instead of building, caching and
ORM-processing it on every request (the profile of issue 5 put 40 % of a request there).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, cast

import psycopg
from sqlalchemy import ClauseElement, Executable, Table, and_, bindparam, delete, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.persistence import driver
from app.persistence.accounts import AccountRecord as AccountRecord  # re-exported: the services import it here
from app.persistence.accounts import Accounts as Accounts
from app.persistence.models import (
    AcceptedSignature,
    AccountPermission,
    Credential,
    IdempotencyKey,
    PermissionAudit,
    RecordedDecision,
    RevokedAppKey,
    Tenant,
    TenantConfig,
)


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


@dataclass(frozen=True)
class StampedCredential:
    """A credential and its tenant's credentials version when it was read: a cached copy is current while the
    version is (every credential change moves it)."""

    credential: CredentialRecord
    version: int


class SignatureRecorded(Enum):
    """What recording a signature found."""

    FIRST_USE = "first use"
    REPLAY = "replay"  # already recorded (by a committed transaction)
    STALE_CREDENTIAL = "stale credential"  # the credential changed since the caller's copy was read


@dataclass(frozen=True)
class SignatureToRecord:
    """A POST's signature, to record as first used by the credential the caller read (its tenant and version)."""

    app_key: str
    signature: str
    expires_at: datetime
    tenant_id: str
    credentials_version: int


@dataclass(frozen=True)
class Revocation:
    """A revoked app key: whose it was and when it was revoked."""

    app_key: str
    tenant_id: str
    revoked_at: datetime


# The upserts are dialect-specific (ON CONFLICT); both dialects spell them the same way.
_INSERT_BY_DIALECT: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert_for(session: Session):  # type: ignore[no-untyped-def]
    return _INSERT_BY_DIALECT[session.get_bind().dialect.name]


_permissions = AccountPermission.__table__
_credentials = Credential.__table__
_signatures = AcceptedSignature.__table__
_tenants = cast(Table, Tenant.__table__)

# Not joined to the account's lock (app/persistence/accounts.py) to save a round trip: under READ
# COMMITTED a SELECT that waited for the lock returns the other tables' rows from the snapshot taken before
# it waited, so it would miss the permissions the previous holder of the lock just committed. A separate
# statement takes a new snapshot.
_PERMISSIONS_OF = select(_permissions.c.permission_type, _permissions.c.status, _permissions.c.updated_at).where(
    _permissions.c.account_id == bindparam("account_id")
)
_CREDENTIAL = select(
    _credentials.c.app_key, _credentials.c.tenant_id, _credentials.c.app_secret, _credentials.c.access_token_sha256
).where(_credentials.c.app_key == bindparam("app_key"))
_STAMPED_CREDENTIAL = select(
    _credentials.c.app_key,
    _credentials.c.tenant_id,
    _credentials.c.app_secret,
    _credentials.c.access_token_sha256,
    _tenants.c.credentials_version,
).where(_credentials.c.app_key == bindparam("app_key"), _tenants.c.id == _credentials.c.tenant_id)
_CREDENTIALS_VERSION = select(_tenants.c.credentials_version).where(_tenants.c.id == bindparam("tenant_id"))
_MOVE_CREDENTIALS_VERSION = (
    _tenants.update()
    .where(_tenants.c.id == bindparam("tenant_id"))
    .values(credentials_version=_tenants.c.credentials_version + 1)
)
_SIGNATURE_RECORDED = select(literal(1)).where(
    _signatures.c.app_key == bindparam("app_key"), _signatures.c.signature == bindparam("signature")
)
# inline(): no RETURNING of the new id, which nothing reads and which a pipelined statement cannot return.
_AUDIT_INSERT = cast(Table, PermissionAudit.__table__).insert().inline()
_DECISIONS = cast(Table, RecordedDecision.__table__)
_DECISION_INSERT = _DECISIONS.insert().inline()


def _per_dialect(build: Any) -> dict[str, Executable]:
    return {name: build(insert) for name, insert in _INSERT_BY_DIALECT.items()}


def _upsert_permissions(insert: Any) -> Executable:
    stmt = insert(_permissions)
    return stmt.on_conflict_do_update(
        index_elements=["account_id", "permission_type"],
        set_={"status": stmt.excluded.status, "updated_at": stmt.excluded.updated_at},
    )


def _record_signature(insert: Any) -> Executable:
    # Inserted only while the caller's credential is as it was read (same tenant, same credentials version):
    # a worker's cached copy is checked in the statement that records the signature, at no extra round trip.
    # A concurrent transaction inserting the same signature makes this one wait for its end (PostgreSQL's
    # unique index; SQLite's write lock), so exactly one of them records it.
    current = select(
        bindparam("app_key"), bindparam("signature"), bindparam("expires_at", type_=_signatures.c.expires_at.type)
    ).where(
        and_(
            _credentials.c.app_key == bindparam("app_key"),
            _credentials.c.tenant_id == bindparam("tenant_id"),
            _tenants.c.id == _credentials.c.tenant_id,
            _tenants.c.credentials_version == bindparam("credentials_version"),
        )
    )
    return (
        insert(_signatures)
        .from_select(["app_key", "signature", "expires_at"], current)
        .on_conflict_do_nothing()
        .returning(_signatures.c.signature)
    )


_UPSERT_PERMISSIONS = _per_dialect(_upsert_permissions)
# On PostgreSQL (driver.insert_rows): the same upsert as _upsert_permissions, with its rows as arrays.
_UPSERT_PERMISSIONS_SQL = driver.postgresql_sql(cast(ClauseElement, _UPSERT_PERMISSIONS["postgresql"]))
_ON_PERMISSION_CONFLICT = _UPSERT_PERMISSIONS_SQL[_UPSERT_PERMISSIONS_SQL.index("ON CONFLICT") :]  # as Core wrote it


def _insert(
    session: Session, table: Table, statement: Executable, rows: Sequence[Mapping[str, object]], suffix: str = ""
) -> None:
    """Insert rows (of the same columns): on psycopg by the driver itself in one statement (see driver.py), else by
    SQLAlchemy (`statement`, which then already holds what `suffix` adds on PostgreSQL)."""
    connection = session.connection()
    psycopg_connection = driver.psycopg_of(connection)
    if psycopg_connection is None:
        connection.execute(statement, list(rows))
        return
    try:
        driver.insert_rows(psycopg_connection, table, rows, suffix)
    except psycopg.Error as exc:  # as the unit of work turns SQLAlchemy's errors into StorageError
        raise driver.storage_error(exc) from exc


RECORD_SIGNATURE = _per_dialect(_record_signature)


class Tenants:
    """Tenants and the version of their SaaS config."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def config_version(self, tenant_id: str) -> int | None:
        """The tenant's config version, or None when there is no such tenant."""
        return self.session.scalar(select(Tenant.config_version).where(Tenant.id == tenant_id))

    def existing(self, tenant_ids: Iterable[str]) -> set[str]:
        """Which of tenant_ids are tenants."""
        wanted = sorted(set(tenant_ids))
        if not wanted:
            return set()
        return set(self.session.scalars(select(Tenant.id).where(Tenant.id.in_(wanted))))

    def add(self, tenant_id: str, at: datetime) -> None:
        """Create a tenant (config version 0)."""
        self.session.add(Tenant(id=tenant_id, config_version=0, created_at=at))
        self.session.flush()

    def move_config_version(self, tenant_id: str) -> bool:
        """Bump the tenant's config version (every worker then reads the new config); False if no tenant."""
        moved = self.session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(config_version=Tenant.config_version + 1)
        )
        return moved.rowcount == 1  # type: ignore[attr-defined]


class Permissions:
    """Stored permission statuses of accounts."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def of(self, account_id: int) -> dict[str, StoredPermission]:
        """Every stored permission of the account, by permission_type."""
        rows = self.session.connection().execute(_PERMISSIONS_OF, {"account_id": account_id}).all()
        return {row[0]: StoredPermission(*row) for row in rows}

    def set_many(self, account_id: int, statuses: Sequence[tuple[str, str]], at: datetime) -> None:
        """Upsert each (permission_type, status): one statement on PostgreSQL, an executemany on SQLite."""
        if not statuses:
            return
        latest = dict(statuses)  # one row per type: one statement may not update a row twice
        rows = [
            {"account_id": account_id, "permission_type": t, "status": s, "updated_at": at} for t, s in latest.items()
        ]
        upsert = _UPSERT_PERMISSIONS[self.session.get_bind().dialect.name]
        _insert(self.session, cast(Table, _permissions), upsert, rows, _ON_PERMISSION_CONFLICT)


class AuditTrail:
    """The append-only audit of applied changes."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, rows: Iterable[dict[str, object]]) -> None:
        """Insert audit rows in one statement."""
        rows = list(rows)
        if rows:
            _insert(self.session, cast(Table, PermissionAudit.__table__), _AUDIT_INSERT, rows)

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
        row = self.session.connection().execute(_CREDENTIAL, {"app_key": app_key}).one_or_none()
        return None if row is None else CredentialRecord(*row)

    def stamped(self, app_key: str) -> StampedCredential | None:
        """The credential for app_key with its tenant's credentials version, if any."""
        row = self.session.connection().execute(_STAMPED_CREDENTIAL, {"app_key": app_key}).one_or_none()
        return None if row is None else StampedCredential(CredentialRecord(*row[:4]), row[4])

    def version(self, tenant_id: str) -> int | None:
        """The tenant's credentials version (None when there is no such tenant)."""
        return self.session.connection().execute(_CREDENTIALS_VERSION, {"tenant_id": tenant_id}).scalar()

    def _moved(self, *tenant_ids: str) -> None:
        """Move the credentials version of each tenant: every worker's cached credential of theirs is stale."""
        self.session.connection().execute(
            _MOVE_CREDENTIALS_VERSION, [{"tenant_id": t} for t in sorted(set(tenant_ids))]
        )

    def put(self, credential: CredentialRecord, at: datetime) -> None:
        """Create the credential, or replace its tenant, secret and token digest."""
        stored = self.session.get(Credential, credential.app_key)
        self._moved(credential.tenant_id, *(() if stored is None else (stored.tenant_id,)))
        if stored is None:
            self.session.add(
                Credential(
                    app_key=credential.app_key,
                    tenant_id=credential.tenant_id,
                    app_secret=credential.app_secret,
                    access_token_sha256=credential.access_token_sha256,
                    created_at=at,
                )
            )
        else:
            stored.tenant_id = credential.tenant_id
            stored.app_secret = credential.app_secret
            stored.access_token_sha256 = credential.access_token_sha256
        self.session.flush()

    def revoke(self, app_key: str, at: datetime) -> Revocation | None:
        """Delete the credential and keep a tombstone of its key; None when no credential has this key."""
        stored = self.session.get(Credential, app_key)
        if stored is None:
            return None
        revocation = Revocation(app_key, stored.tenant_id, at)
        self._moved(stored.tenant_id)
        self.session.delete(stored)
        self.session.merge(RevokedAppKey(app_key=app_key, tenant_id=stored.tenant_id, revoked_at=at))
        self.session.flush()
        return revocation

    def revocation(self, app_key: str) -> Revocation | None:
        """The tombstone of a revoked app key, if it was revoked."""
        row = self.session.get(RevokedAppKey, app_key)
        return None if row is None else Revocation(row.app_key, row.tenant_id, row.revoked_at)


class TenantConfigs:
    """Tenants' SaaS configs as stored."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def patterns(self, tenant_id: str) -> tuple[str, ...] | None:
        """The tenant's enabled patterns, or None when it has no config."""
        raw = self.session.scalar(select(TenantConfig.enabled_patterns).where(TenantConfig.tenant_id == tenant_id))
        return None if raw is None else tuple(json.loads(raw))

    def every(self) -> dict[str, tuple[str, ...]]:
        """Every tenant's enabled patterns, by tenant id (tenants without a config are absent)."""
        rows = self.session.execute(
            select(TenantConfig.tenant_id, TenantConfig.enabled_patterns).order_by(TenantConfig.tenant_id)
        )
        return {tenant_id: tuple(json.loads(raw)) for tenant_id, raw in rows}

    def replace(self, tenant_id: str, patterns: Sequence[str], at: datetime) -> None:
        """Store the tenant's patterns (the caller moves its config version in the same transaction)."""
        self.session.merge(
            TenantConfig(tenant_id=tenant_id, enabled_patterns=json.dumps(list(patterns)), updated_at=at)
        )
        self.session.flush()


class Signatures:
    """Signatures of accepted POSTs, kept for the replay window."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(
        self, *, app_key: str, signature: str, expires_at: datetime, tenant_id: str, credentials_version: int
    ) -> SignatureRecorded:
        """Record a signature of the credential as the caller read it (its tenant, its credentials version).

        One statement when it is a first use; a second tells a replay from a credential changed since.
        """
        connection = self.session.connection()
        inserted = connection.execute(
            RECORD_SIGNATURE[connection.dialect.name],
            {
                "app_key": app_key,
                "signature": signature,
                "expires_at": expires_at,
                "tenant_id": tenant_id,
                "credentials_version": credentials_version,
            },
        )
        if inserted.first() is not None:
            return SignatureRecorded.FIRST_USE
        return self.why_not_recorded(app_key, signature)

    def why_not_recorded(self, app_key: str, signature: str) -> SignatureRecorded:
        """Why recording a signature inserted nothing: it was recorded already, or the credential changed."""
        seen = self.session.connection().execute(_SIGNATURE_RECORDED, {"app_key": app_key, "signature": signature})
        return SignatureRecorded.REPLAY if seen.first() is not None else SignatureRecorded.STALE_CREDENTIAL

    def forget_expired(self, now: datetime) -> None:
        """Drop signatures whose window has passed."""
        self.session.execute(delete(AcceptedSignature).where(AcceptedSignature.expires_at < now))


@dataclass(frozen=True)
class StoredDecision:
    """A row of the decisions table (the JSON columns as stored text)."""

    id: int
    trace_id: str
    tenant_id: str
    account_no: str
    rule_set_version: str
    changes: str
    tenant_patterns: str
    account_state: str
    code: int
    failure_index: int
    rule_id: str | None
    created_at: datetime
    account_status: str | None
    attributes: str | None
    warned_by: str | None
    dryrun_by: str | None
    published_version: str | None = None  # the stored version (SPEC §7d) that judged it; None before 0008


class Decisions:
    """Recorded decisions: what reached the rules, the state it met, and the outcome."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, **fields: object) -> None:
        """Append one decision."""
        _insert(self.session, _DECISIONS, _DECISION_INSERT, [fields])

    def since(self, when: datetime | None) -> list[RecordedDecision]:
        """Decisions recorded at or after when (all when None), oldest first."""
        query = select(RecordedDecision)
        if when is not None:
            query = query.where(RecordedDecision.created_at >= when)
        return list(self.session.scalars(query.order_by(RecordedDecision.id)))

    def stream(self, when: datetime | None, *, batch_size: int = 1000) -> Iterator[StoredDecision]:
        """Decisions recorded at or after when (all when None), oldest first, read batch_size rows at a time
        (keyset on id): a history of any length is replayed without holding it in memory."""
        after = 0
        while True:
            query = select(_DECISIONS).where(_DECISIONS.c.id > after)
            if when is not None:
                query = query.where(_DECISIONS.c.created_at >= when)
            batch = self.session.connection().execute(query.order_by(_DECISIONS.c.id).limit(batch_size)).all()
            for row in batch:
                yield StoredDecision(**row._mapping)
            if len(batch) < batch_size:
                return
            after = batch[-1].id

    def with_trace(self, trace_id: str) -> list[RecordedDecision]:
        """The decisions recorded under a trace id, oldest first (a caller may reuse its own X-Trace-Id)."""
        query = select(RecordedDecision).where(RecordedDecision.trace_id == trace_id)
        return list(self.session.scalars(query.order_by(RecordedDecision.id)))


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

    def claim(
        self, *, tenant_id: str, key: str, request_sha256: str, now: datetime, expires_at: datetime, wait_ms: int = 0
    ) -> StoredKey | None:
        """Take the key for this request (None), or return what is stored under it.

        On PostgreSQL a concurrent claim of the same key waits here until the first transaction ends, at most
        wait_ms (then the driver raises lock_not_available, which the unit of work reports as StorageBusy).
        An expired key is taken over as if it were new.
        """
        postgres = self.session.get_bind().dialect.name == "postgresql"
        if postgres and wait_ms:
            self.session.connection().exec_driver_sql(f"SET LOCAL lock_timeout = {int(wait_ms)}")
        stored = self._claim(tenant_id, key, request_sha256, now, expires_at)
        if postgres and wait_ms:  # the rest of the transaction waits for locks as usual: the session's bound (the
            # request path's, from the connection's options; none on a maintenance engine), never none at all
            self.session.connection().exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")
        return stored

    def _claim(
        self, tenant_id: str, key: str, request_sha256: str, now: datetime, expires_at: datetime
    ) -> StoredKey | None:
        insert = _insert_for(self.session)
        stmt = insert(IdempotencyKey).values(
            tenant_id=tenant_id,
            idempotency_key=key,
            request_sha256=request_sha256,
            created_at=now,
            expires_at=expires_at,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "idempotency_key"],
            set_={
                "request_sha256": stmt.excluded.request_sha256,
                "http_status": None,
                "response": None,
                "created_at": stmt.excluded.created_at,
                "expires_at": stmt.excluded.expires_at,
            },
            where=IdempotencyKey.expires_at < now,
        ).returning(IdempotencyKey.tenant_id)
        if self.session.execute(stmt).first() is not None:
            return None
        row = self.session.execute(
            select(IdempotencyKey.request_sha256, IdempotencyKey.http_status, IdempotencyKey.response).where(
                IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.idempotency_key == key
            )
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
