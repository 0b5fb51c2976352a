"""Typed ORM models. Alembic (migrations/) is the only thing that creates their tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.persistence.db import Base, UTCDateTime, str64, str128, utc_datetime


class Tenant(Base):
    """A broker using the service. config_version moves whenever its SaaS config changes, credentials_version
    whenever one of its credentials is created, changed or revoked (workers cache both by version)."""

    __tablename__ = "tenants"

    id: Mapped[str64] = mapped_column(primary_key=True)
    config_version: Mapped[int] = mapped_column(Integer, default=0)
    credentials_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[utc_datetime]


class Credential(Base):
    """An app key of one tenant: its secret signs requests, its token is stored only as a hash."""

    __tablename__ = "credentials"

    app_key: Mapped[str128] = mapped_column(primary_key=True)
    tenant_id: Mapped[str64] = mapped_column(ForeignKey("tenants.id"), index=True)
    app_secret: Mapped[str] = mapped_column(String(256))
    access_token_sha256: Mapped[str64]
    created_at: Mapped[utc_datetime]


class RevokedAppKey(Base):
    """A revoked app key: its credential is deleted and `permctl load` never brings it back."""

    __tablename__ = "revoked_app_keys"

    app_key: Mapped[str128] = mapped_column(primary_key=True)
    tenant_id: Mapped[str64]
    revoked_at: Mapped[utc_datetime]


class TenantConfig(Base):
    """A tenant's SaaS config: the glob patterns over the catalog that it may use."""

    __tablename__ = "tenant_configs"

    tenant_id: Mapped[str64] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    enabled_patterns: Mapped[str] = mapped_column(Text)  # JSON list of glob patterns
    updated_at: Mapped[utc_datetime]


class Account(Base):
    """A securities account; account_no is the broker's origin_id, unique within a tenant."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("tenant_id", "origin_id", name="uq_accounts_tenant_origin"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str64] = mapped_column(ForeignKey("tenants.id"))
    origin_id: Mapped[str64]
    status: Mapped[str] = mapped_column(String(16))  # active | deregistered
    created_at: Mapped[utc_datetime]


class AccountPermission(Base):
    """The current status of one permission of one account (a permission never set is close)."""

    __tablename__ = "account_permissions"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    permission_type: Mapped[str64] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[utc_datetime]


class AccountAttribute(Base):
    """One declared attribute of one account (rules/attributes.yaml says which exist): a row per name."""

    __tablename__ = "account_attributes"
    __table_args__ = (Index("ix_account_attributes_name_value", "name", "value"),)

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    name: Mapped[str64] = mapped_column(primary_key=True)
    value: Mapped[str64]


# An audit row keeps the whole attribute set before and after, as JSON the driver (de)serialises.
AttributeSnapshot = JSON().with_variant(JSONB(), "postgresql")


class AccountAudit(Base):
    """One effective change of an account's status or attributes (a creation has no before). Append-only."""

    __tablename__ = "account_audit"
    __table_args__ = (Index("ix_account_audit_account", "tenant_id", "account_no", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    trace_id: Mapped[str128]
    tenant_id: Mapped[str64]
    app_key: Mapped[str128]
    account_no: Mapped[str64]
    status_before: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status_after: Mapped[str] = mapped_column(String(16))
    attributes_before: Mapped[dict[str, str] | None] = mapped_column(AttributeSnapshot, nullable=True)
    attributes_after: Mapped[dict[str, str]] = mapped_column(AttributeSnapshot)
    rule_set_version: Mapped[str64]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PermissionAudit(Base):
    """One applied change. Append-only."""

    __tablename__ = "permission_audit"
    __table_args__ = (Index("ix_permission_audit_account", "tenant_id", "account_no", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    trace_id: Mapped[str128]
    tenant_id: Mapped[str64]
    app_key: Mapped[str128]
    account_no: Mapped[str64]
    permission_type: Mapped[str64]
    status_before: Mapped[str] = mapped_column(String(8))
    status_after: Mapped[str] = mapped_column(String(8))
    rule_set_version: Mapped[str64]
    warned_by: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of warn policies that held
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AcceptedSignature(Base):
    """A POST signature already accepted: a second use inside the window is a replay."""

    __tablename__ = "accepted_signatures"

    app_key: Mapped[str128] = mapped_column(primary_key=True)
    signature: Mapped[str64] = mapped_column(primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class RecordedDecision(Base):
    """What reached the rules and what they decided: the input of `permctl rules impact`."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    trace_id: Mapped[str128]
    tenant_id: Mapped[str64]
    account_no: Mapped[str64]
    rule_set_version: Mapped[str64]
    changes: Mapped[str] = mapped_column(Text)  # JSON: the changes as the rules saw them
    tenant_patterns: Mapped[str] = mapped_column(Text)  # JSON: the tenant's config patterns
    account_state: Mapped[str] = mapped_column(Text)  # JSON: every stored status (before 0006: the named types')
    code: Mapped[int] = mapped_column(Integer)
    failure_index: Mapped[int] = mapped_column(Integer)
    rule_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())  # also the time the rules judged at
    account_status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # NULL (before 0006): active
    attributes: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON; NULL (before 0006): none
    warned_by: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of warn policies that held
    dryrun_by: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of dryrun policies that held


class RulesReload(Base):
    """A counter bumped by `permctl rules reload`; every worker on every host reloads when it moves."""

    __tablename__ = "rules_reloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyKey(Base):
    """A tenant's Idempotency-Key, the request it was first used with, and the answer that request got."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str64] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str128] = mapped_column(primary_key=True)
    request_sha256: Mapped[str64]
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: code, message, data
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
