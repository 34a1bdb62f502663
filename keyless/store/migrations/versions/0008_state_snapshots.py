"""Snapshots of the whole store for `POST /keyless/v1/state:snapshot` / `:restore` (issue #22).

Revision ID: 0008_state_snapshots
Revises: 0007_console_sessions
Create Date: 2026-12-07 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_state_snapshots"
down_revision = "0007_console_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_snapshots",
        sa.Column("snapshot_id", sa.String(63), primary_key=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("state_snapshots")
