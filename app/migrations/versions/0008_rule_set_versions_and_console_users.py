"""Rule-set versions in the database, publications, proposals, reviews, the approval policy; console users and
their audit (SPEC §7d). The reload counter of `permctl rules reload` goes: workers follow the live pointer.

Every table of the sign-off trail is append-only, enforced by the database as for permission_audit (0003):
versions and their files, proposals, reviews, publications, the approval policy's changes and the console audit.
console_users is not: a role changes and a user is disabled, each change appended to console_audit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APPEND_ONLY = (
    "rule_set_versions",
    "rule_set_files",
    "rule_set_publications",
    "rule_set_proposals",
    "rule_set_reviews",
    "approval_policy_changes",
    "console_audit",
)
# Each append-only table's primary key: on SQLite, INSERT OR REPLACE deletes the row it replaces without firing
# DELETE triggers (recursive_triggers is off), so an insert that would meet an existing key is refused by itself.
PRIMARY_KEYS = {
    "rule_set_versions": ("version",),
    "rule_set_files": ("version", "path"),
    "rule_set_publications": ("id",),
    "rule_set_proposals": ("version",),
    "rule_set_reviews": ("id",),
    "approval_policy_changes": ("id",),
    "console_audit": ("id",),
}

PG_FUNCTION = """
CREATE FUNCTION sign_off_trail_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def _create_tables() -> None:
    op.create_table(
        "rule_set_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("rule_set_version", sa.String(64), nullable=False, index=True),
        sa.Column("stored_at", UTCDateTime(), nullable=False),
        sa.Column("stored_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "rule_set_files",
        sa.Column("version", sa.String(64), sa.ForeignKey("rule_set_versions.version"), primary_key=True),
        sa.Column("path", sa.String(255), primary_key=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "rule_set_publications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.String(64), sa.ForeignKey("rule_set_versions.version"), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.Column("published_by", sa.String(128), nullable=False),
        sa.Column("approval_id", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_table(
        "rule_set_proposals",
        sa.Column("version", sa.String(64), sa.ForeignKey("rule_set_versions.version"), primary_key=True),
        sa.Column("proposed_by", sa.String(128), nullable=False),
        sa.Column("proposed_at", UTCDateTime(), nullable=False),
        sa.Column("against_version", sa.String(64), nullable=True),
        sa.Column("clean", sa.Boolean, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
    )
    op.create_table(
        "rule_set_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), sa.ForeignKey("rule_set_versions.version"), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("against_publication", sa.Integer, nullable=True),
        sa.Column("reviewed_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_rule_set_reviews_version", "rule_set_reviews", ["version", "id"])
    op.create_table(
        "approval_policy_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "console_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
    )


def _append_only(table: str, postgresql: bool) -> None:
    if postgresql:
        op.execute(
            f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION sign_off_trail_is_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION sign_off_trail_is_append_only()"
        )
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} is not allowed'); END"
        )
    same_key = " AND ".join(f"{column} = NEW.{column}" for column in PRIMARY_KEYS[table])
    op.execute(
        f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
        f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {same_key}) "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: REPLACE is not allowed'); END"
    )


def upgrade() -> None:
    """Create the tables and their append-only triggers; add decisions.published_version; drop rules_reloads."""
    _create_tables()
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(PG_FUNCTION)
    for table in APPEND_ONLY:
        _append_only(table, postgresql)
    op.add_column("decisions", sa.Column("published_version", sa.String(64), nullable=True))
    op.drop_table("rules_reloads")


def downgrade() -> None:
    """Back to 0007: the reload counter returns; every version, publication and user is dropped."""
    op.create_table(
        "rules_reloads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
    )
    op.drop_column("decisions", "published_version")
    for table in reversed((*APPEND_ONLY, "console_users")):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION sign_off_trail_is_append_only()")
