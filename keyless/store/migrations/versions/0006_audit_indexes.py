"""Indexes for entries:list: a project's entries by methodName or principalEmail, in time order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 08:00:00
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_project_method_time", "audit_entries",
                    ["project_id", "method_name", "timestamp", "id"], unique=False)
    op.create_index("ix_audit_project_email_time", "audit_entries",
                    ["project_id", "principal_email", "timestamp", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_project_email_time", table_name="audit_entries")
    op.drop_index("ix_audit_project_method_time", table_name="audit_entries")
