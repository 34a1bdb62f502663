"""Secret Manager secrets and versions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 05:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sm_secrets",
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(30), nullable=False),
        sa.Column("project_number", sa.String(20), nullable=False),
        sa.Column("secret_id", sa.String(255), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("replication", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
    )
    op.create_index("ux_sm_secret_name", "sm_secrets", ["project_id", "secret_id"], unique=True)
    op.create_table(
        "sm_secret_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("secret_uid", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroy_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("crc32c", sa.BigInteger(), nullable=False),
        sa.Column("client_checksum", sa.Boolean(), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
    )
    op.create_index("ux_sm_secret_version", "sm_secret_versions", ["secret_uid", "version"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_sm_secret_version", table_name="sm_secret_versions")
    op.drop_table("sm_secret_versions")
    op.drop_index("ux_sm_secret_name", table_name="sm_secrets")
    op.drop_table("sm_secrets")
