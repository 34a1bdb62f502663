"""Console sessions: opaque ids (stored hashed) bound to a principal, its token's scopes and expiry,
and the server that minted them (issue #23 item 9).

Revision ID: 0007_console_sessions
Revises: 0006
Create Date: 2026-12-07 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_console_sessions"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("server", sa.String(512), nullable=False),
        sa.Column("principal", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("service_account_id", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_console_sessions_service_account_id", "console_sessions", ["service_account_id"])
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_index("ix_console_sessions_service_account_id", table_name="console_sessions")
    op.drop_table("console_sessions")
