"""Decisions keep everything the rules could see; policy hits in decisions and the audit.

The decisions row now holds the whole DecisionInput across typed columns: the changes as the rules saw them,
the tenant's patterns, every stored status (account_state), the account's status and attributes, and the
time (created_at). Rows recorded before keep replaying: account_status NULL reads as active, attributes NULL
as none. warned_by / dryrun_by list the warn and dryrun policies that held (JSON), in the decision and, for
warn, in each audit row of the accepted request.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the columns (plain ADD COLUMN: the audit's append-only triggers stay in place)."""
    op.add_column("decisions", sa.Column("account_status", sa.String(16), nullable=True))
    op.add_column("decisions", sa.Column("attributes", sa.Text, nullable=True))
    op.add_column("decisions", sa.Column("warned_by", sa.Text, nullable=True))
    op.add_column("decisions", sa.Column("dryrun_by", sa.Text, nullable=True))
    op.add_column("permission_audit", sa.Column("warned_by", sa.Text, nullable=True))


def downgrade() -> None:
    """Drop them again."""
    op.drop_column("permission_audit", "warned_by")
    for name in ("dryrun_by", "warned_by", "attributes", "account_status"):
        op.drop_column("decisions", name)
