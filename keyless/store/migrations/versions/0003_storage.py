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
    op.create_table(
        "storage_buckets",
        sa.Column("name", sa.String(222), primary_key=True),
        sa.Column("project_id", sa.String(30), nullable=False, index=True),
        sa.Column("project_number", sa.String(20), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("storage_class", sa.String(32), nullable=False),
        sa.Column("metageneration", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_table(
        "storage_objects",
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
    )
    op.create_index("ux_storage_object_name", "storage_objects", ["bucket", "name"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_storage_object_name", table_name="storage_objects")
    op.drop_table("storage_objects")
    op.drop_table("storage_buckets")
