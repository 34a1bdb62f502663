"""Soft-deleted Cloud Storage buckets (issue #20): a bucket's generation, and the buckets deleted
under a soft delete policy, restorable with buckets.restore until their hard delete time.

Revision ID: 0016_storage_deleted_buckets (alembic_version holds 32 characters)
Revises: 0014_regional_secrets
Create Date: 2026-12-07 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0016_storage_deleted_buckets"
down_revision = "0015_managed_workload_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("storage_buckets") as batch:
        batch.add_column(sa.Column("generation", sa.BigInteger(), nullable=True))
    op.create_table(
        "storage_soft_deleted_buckets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(222), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("project_id", sa.String(30), nullable=False),
        sa.Column("project_number", sa.String(20), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("storage_class", sa.String(32), nullable=False),
        sa.Column("metageneration", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("soft_delete_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hard_delete_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_storage_soft_deleted_buckets_project_id", "storage_soft_deleted_buckets", ["project_id"])
    op.create_index("ux_storage_soft_deleted_bucket", "storage_soft_deleted_buckets", ["name", "generation"],
                    unique=True)


def downgrade() -> None:
    # the parked objects of soft-deleted buckets (bucket key `~ID`) go with them
    op.execute("DELETE FROM storage_object_versions WHERE bucket LIKE '~%'")
    op.drop_index("ux_storage_soft_deleted_bucket", table_name="storage_soft_deleted_buckets")
    op.drop_index("ix_storage_soft_deleted_buckets_project_id", table_name="storage_soft_deleted_buckets")
    op.drop_table("storage_soft_deleted_buckets")
    with op.batch_alter_table("storage_buckets") as batch:
        batch.drop_column("generation")
