"""Cloud Storage bucket relocation (issue #20): the relocation a bucket is going through
(buckets.relocate, keyless.storage.relocation), beside its long-running operation.

Revision ID: 0019_storage_relocation (alembic_version holds 32 characters)
Revises: 0018_pubsub_schemas
Create Date: 2026-12-07 17:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0019_storage_relocation"
down_revision = "0018_pubsub_schemas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("storage_buckets") as batch:
        batch.add_column(sa.Column("relocation", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("storage_buckets") as batch:
        batch.drop_column("relocation")
