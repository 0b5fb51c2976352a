"""Append-only audit enforced by the database itself; idempotency keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE FUNCTION permission_audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'permission_audit is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def upgrade() -> None:
    """Refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) of audit rows; create idempotency_keys."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER permission_audit_no_update_delete BEFORE UPDATE OR DELETE ON permission_audit "
            "FOR EACH ROW EXECUTE FUNCTION permission_audit_is_append_only()"
        )
        op.execute(
            "CREATE TRIGGER permission_audit_no_truncate BEFORE TRUNCATE ON permission_audit "
            "FOR EACH STATEMENT EXECUTE FUNCTION permission_audit_is_append_only()"
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER permission_audit_no_{operation.lower()} BEFORE {operation} "
                f"ON permission_audit BEGIN SELECT RAISE(ABORT, 'permission_audit is append-only: "
                f"{operation} is not allowed'); END"
            )
        # INSERT OR REPLACE deletes the old row without firing DELETE triggers (recursive_triggers is off).
        op.execute(
            "CREATE TRIGGER permission_audit_no_replace BEFORE INSERT ON permission_audit "
            "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM permission_audit WHERE id = NEW.id) "
            "BEGIN SELECT RAISE(ABORT, 'permission_audit is append-only: REPLACE is not allowed'); END"
        )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(128), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    """Drop idempotency_keys and the audit triggers."""
    op.drop_table("idempotency_keys")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER permission_audit_no_truncate ON permission_audit")
        op.execute("DROP TRIGGER permission_audit_no_update_delete ON permission_audit")
        op.execute("DROP FUNCTION permission_audit_is_append_only()")
    else:
        op.execute("DROP TRIGGER permission_audit_no_replace")
        op.execute("DROP TRIGGER permission_audit_no_update")
        op.execute("DROP TRIGGER permission_audit_no_delete")
