"""Cloud Logging sinks and exclusions (issue #20), and audit_entries.log_name as text: entries
written with entries.write have log ids of up to 511 characters, URL-encoded.

Revision ID: 0011_logging_sinks
Revises: 0009_audit_resource_name_text
Create Date: 2026-12-07 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0011_logging_sinks"
down_revision = "0010_pubsub"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("log_name", type_=sa.Text(), existing_type=sa.String(200), existing_nullable=False)
    op.create_table(
        "logging_sinks",
        sa.Column("project_id", sa.String(30), primary_key=True),
        sa.Column("sink_id", sa.String(100), primary_key=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
    )
    op.create_table(
        "logging_exclusions",
        sa.Column("project_id", sa.String(30), primary_key=True),
        sa.Column("exclusion_id", sa.String(100), primary_key=True),
        sa.Column("body", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("logging_exclusions")
    op.drop_table("logging_sinks")
    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("log_name", type_=sa.String(200), existing_type=sa.Text(), existing_nullable=False)
