"""Audit entries' resource_name as text: an object's resource name (bucket 222 characters, object
name up to 1,024 bytes) passed the old 500, and PostgreSQL refused the whole batch it was in
(issue #23 item 5).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("resource_name", type_=sa.Text(), existing_type=sa.String(500), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("resource_name", type_=sa.String(500), existing_type=sa.Text(), existing_nullable=False)
