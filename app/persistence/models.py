"""Typed ORM models. Alembic (migrations/) is the only thing that creates their tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
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
    published_version: Mapped[str | None] = mapped_column(String(64), nullable=True)  # NULL before 0008


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


class RuleSetVersion(Base):
    """A rule set as stored (SPEC §7d), named by the content hash of all its files; kept for ever. Append-only."""

    __tablename__ = "rule_set_versions"

    version: Mapped[str64] = mapped_column(primary_key=True)  # tree_digest of every file (64 hex)
    rule_set_version: Mapped[str64] = mapped_column(index=True)  # what decides (16 hex), as decisions record it
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stored_by: Mapped[str128]


class RuleSetFile(Base):
    """One file of a stored version, by its path under the rules directory. Append-only."""

    __tablename__ = "rule_set_files"

    version: Mapped[str64] = mapped_column(ForeignKey("rule_set_versions.version"), primary_key=True)
    path: Mapped[str] = mapped_column(String(255), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class RuleSetPublication(Base):
    """A move of the live pointer: the publication with the highest id names the live version. Append-only.

    ids are assigned as the highest so far + 1 in the publishing transaction: of two concurrent publications one
    fails on the primary key instead of both winning."""

    __tablename__ = "rule_set_publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[str64] = mapped_column(ForeignKey("rule_set_versions.version"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # adopted | approved | unreviewed | break_glass
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_by: Mapped[str128]
    approval_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class RuleSetProposal(Base):
    """A version proposed by an author, with the report computed when it was proposed. Append-only."""

    __tablename__ = "rule_set_proposals"

    version: Mapped[str64] = mapped_column(ForeignKey("rule_set_versions.version"), primary_key=True)
    proposed_by: Mapped[str128]
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    against_version: Mapped[str | None] = mapped_column(String(64), nullable=True)  # live when proposed
    clean: Mapped[bool]
    report: Mapped[str] = mapped_column(Text)  # JSON


class RuleSetReview(Base):
    """An approver's approval or rejection of a version, against the live publication of that moment. Append-only."""

    __tablename__ = "rule_set_reviews"
    __table_args__ = (Index("ix_rule_set_reviews_version", "version", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str64] = mapped_column(ForeignKey("rule_set_versions.version"))
    reviewer: Mapped[str128]
    verdict: Mapped[str] = mapped_column(String(16))  # approve | reject
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    against_publication: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApprovalPolicyChange(Base):
    """The approval policy as an approver set it; the latest row rules, none means `required`. Append-only."""

    __tablename__ = "approval_policy_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy: Mapped[str] = mapped_column(String(16))  # required | off
    changed_by: Mapped[str128]
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleUser(Base):
    """A person: a viewer, an author or an approver of rule sets (SPEC §7d, §10)."""

    __tablename__ = "console_users"

    name: Mapped[str64] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleAuditEntry(Base):
    """Who did what, when, from where: every user change and every act on rule sets. Append-only."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str128]
    action: Mapped[str64]
    target: Mapped[str] = mapped_column(String(255))
    detail: Mapped[str] = mapped_column(Text)  # JSON
    origin: Mapped[str] = mapped_column(String(255))
