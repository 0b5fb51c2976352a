"""Account attributes (a row per account and name) and the append-only account audit trail.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from app.persistence.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SNAPSHOT = sa.JSON().with_variant(JSONB(), "postgresql")
PG_FUNCTION = """
CREATE FUNCTION account_audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'account_audit is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def upgrade() -> None:
    """Create account_attributes and account_audit; refuse UPDATE, DELETE (and TRUNCATE) of audit rows."""
    op.create_table(
        "account_attributes",
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(64), nullable=False),
    )
    op.create_index("ix_account_attributes_name_value", "account_attributes", ["name", "value"])
    op.create_table(
        "account_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("app_key", sa.String(128), nullable=False),
        sa.Column("account_no", sa.String(64), nullable=False),
        sa.Column("status_before", sa.String(16), nullable=True),
        sa.Column("status_after", sa.String(16), nullable=False),
        sa.Column("attributes_before", SNAPSHOT, nullable=True),
        sa.Column("attributes_after", SNAPSHOT, nullable=False),
        sa.Column("rule_set_version", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_account_audit_account", "account_audit", ["tenant_id", "account_no", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER account_audit_no_update_delete BEFORE UPDATE OR DELETE ON account_audit "
            "FOR EACH ROW EXECUTE FUNCTION account_audit_is_append_only()"
        )
        op.execute(
            "CREATE TRIGGER account_audit_no_truncate BEFORE TRUNCATE ON account_audit "
            "FOR EACH STATEMENT EXECUTE FUNCTION account_audit_is_append_only()"
        )
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER account_audit_no_{operation.lower()} BEFORE {operation} ON account_audit "
            f"BEGIN SELECT RAISE(ABORT, 'account_audit is append-only: {operation} is not allowed'); END"
        )
    # INSERT OR REPLACE deletes the old row without firing DELETE triggers (recursive_triggers is off).
    op.execute(
        "CREATE TRIGGER account_audit_no_replace BEFORE INSERT ON account_audit "
        "WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM account_audit WHERE id = NEW.id) "
        "BEGIN SELECT RAISE(ABORT, 'account_audit is append-only: REPLACE is not allowed'); END"
    )


def downgrade() -> None:
    """Drop the account audit trail (and its triggers) and the account attributes."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER account_audit_no_truncate ON account_audit")
        op.execute("DROP TRIGGER account_audit_no_update_delete ON account_audit")
        op.execute("DROP FUNCTION account_audit_is_append_only()")
    op.drop_table("account_audit")  # SQLite drops a table's triggers with it
    op.drop_table("account_attributes")
