"""Resource Manager v3 CapabilityConfigs of projects (`projects/P/capabilityConfigs/C`, issue #20).

Revision ID: 0017_capability_configs
Revises: 0014_regional_secrets
Create Date: 2026-12-07 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0017_capability_configs"
down_revision = "0016_storage_deleted_buckets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capability_configs",
        sa.Column("project_id", sa.String(30), primary_key=True),
        sa.Column("config_id", sa.String(30), primary_key=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("capability_configs")
