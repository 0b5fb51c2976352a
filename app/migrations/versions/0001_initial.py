"""Initial schema: tenants, credentials, configs, accounts, permissions, audit, accepted signatures.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("config_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "credentials",
        sa.Column("app_key", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("app_secret", sa.String(256), nullable=False),
        sa.Column("access_token_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "tenant_configs",
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("enabled_patterns", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("origin_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "origin_id", name="uq_accounts_tenant_origin"),
        sa.CheckConstraint("status IN ('active', 'deregistered')", name="ck_accounts_status"),
    )
    op.create_table(
        "account_permissions",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("permission_type", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('open', 'close')", name="ck_account_permissions_status"),
    )
    op.create_table(
        "permission_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("app_key", sa.String(128), nullable=False),
        sa.Column("account_no", sa.String(64), nullable=False),
        sa.Column("permission_type", sa.String(64), nullable=False),
        sa.Column("status_before", sa.String(8), nullable=False),
        sa.Column("status_after", sa.String(8), nullable=False),
        sa.Column("rule_set_version", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_permission_audit_account", "permission_audit", ["tenant_id", "account_no", "id"])
    op.create_table(
        "accepted_signatures",
        sa.Column("app_key", sa.String(128), primary_key=True),
        sa.Column("signature", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_accepted_signatures_expires_at", "accepted_signatures", ["expires_at"])


def downgrade() -> None:
    """Drop every table."""
    for table in (
        "accepted_signatures",
        "permission_audit",
        "account_permissions",
        "accounts",
        "tenant_configs",
        "credentials",
        "tenants",
    ):
        op.drop_table(table)
