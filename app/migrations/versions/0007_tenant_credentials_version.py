"""Tenants' credentials version: moved by every credential change, so workers may cache credentials exactly.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add tenants.credentials_version (0 for every tenant)."""
    op.add_column("tenants", sa.Column("credentials_version", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop tenants.credentials_version (workers then read credentials on every request again)."""
    op.drop_column("tenants", "credentials_version")
