"""Cloud Storage buckets and objects.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 05:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
