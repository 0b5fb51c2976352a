"""Revoked app keys: a tombstone per revoked credential, so a repeated `permctl load` cannot restore it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from app.persistence.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create revoked_app_keys."""
    op.create_table(
        "revoked_app_keys",
        sa.Column("app_key", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    """Drop revoked_app_keys (revoked keys could then be loaded again)."""
    op.drop_table("revoked_app_keys")
