"""Audit entries' resource_name as text: an object's resource name (bucket 222 characters, object
name up to 1,024 bytes) passed the old 500, and PostgreSQL refused the whole batch it was in
(issue #23 item 5).

Revision ID: 0009_audit_resource_name_text
Revises: 0008_state_snapshots
Create Date: 2026-12-07 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_audit_resource_name_text"
down_revision = "0008_state_snapshots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("resource_name", type_=sa.Text(), existing_type=sa.String(500), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("resource_name", type_=sa.String(500), existing_type=sa.Text(), existing_nullable=False)
