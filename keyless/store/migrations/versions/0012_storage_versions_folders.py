"""Cloud Storage object versions (the noncurrent generations of versioned buckets and the
soft-deleted objects of buckets with a soft delete policy) and managed folders (issue #20).

Revision ID: 0012_storage_versions_folders (alembic_version holds 32 characters)
Revises: 0009_audit_resource_name_text
Create Date: 2026-12-07 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_storage_versions_folders"
down_revision = "0011_logging_sinks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_object_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(222), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("metageneration", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("md5_hash", sa.String(32), nullable=False),
        sa.Column("crc32c", sa.String(16), nullable=False),
        sa.Column("blob_id", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("time_deleted", sa.DateTime(timezone=True), nullable=False),
        sa.Column("soft_delete_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hard_delete_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_storage_object_versions_name", "storage_object_versions", ["bucket", "name"])
    op.create_table(
        "storage_managed_folders",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(222), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("metageneration", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_storage_managed_folder_name", "storage_managed_folders", ["bucket", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_storage_managed_folder_name", table_name="storage_managed_folders")
    op.drop_table("storage_managed_folders")
    op.drop_index("ix_storage_object_versions_name", table_name="storage_object_versions")
    op.drop_table("storage_object_versions")
