"""Workload identity pool providers' keys (providers.keys.*, issue #20).

Revision ID: 0013_provider_keys
Revises: 0009_audit_resource_name_text
Create Date: 2026-12-07 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0013_provider_keys"
down_revision = "0012_storage_versions_folders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workload_identity_pool_provider_keys",
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("provider_name", sa.String(400), nullable=False),
        sa.Column("key_spec", sa.String(16), nullable=False),
        sa.Column("use", sa.String(16), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("private_key_pem", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_workload_identity_pool_provider_keys_provider_name", "workload_identity_pool_provider_keys",
                    ["provider_name"])


def downgrade() -> None:
    op.drop_index("ix_workload_identity_pool_provider_keys_provider_name", "workload_identity_pool_provider_keys")
    op.drop_table("workload_identity_pool_provider_keys")
