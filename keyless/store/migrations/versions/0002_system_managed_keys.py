"""System-managed service account keys keep their private half (signBlob, signJwt).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 03:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service_account_keys") as batch:
        batch.add_column(sa.Column("private_key_pem", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("service_account_keys") as batch:
        batch.drop_column("private_key_pem")
