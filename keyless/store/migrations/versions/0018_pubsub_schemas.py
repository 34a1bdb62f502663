"""Pub/Sub schemas and their revisions (issue #20).

Revision ID: 0018_pubsub_schemas
Revises: 0014_regional_secrets
Create Date: 2026-12-07 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0018_pubsub_schemas"
down_revision = "0017_capability_configs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_schemas",
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(30), nullable=False),
        sa.Column("schema_id", sa.String(255), nullable=False),
    )
    op.create_index("ux_ps_schema_name", "ps_schemas", ["project_id", "schema_id"], unique=True)
    op.create_table(
        "ps_schema_revisions",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("schema_uid", sa.String(36), nullable=False),
        sa.Column("revision_id", sa.String(8), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ps_schema_revisions_schema_uid", "ps_schema_revisions", ["schema_uid"])


def downgrade() -> None:
    op.drop_index("ix_ps_schema_revisions_schema_uid", table_name="ps_schema_revisions")
    op.drop_table("ps_schema_revisions")
    op.drop_index("ux_ps_schema_name", table_name="ps_schemas")
    op.drop_table("ps_schemas")
