"""Regional secrets (Secret Manager `projects/P/locations/L/secrets/S`, issue #20): a secret's
location ('' for a global secret); a secret id is unique per project and location. And a
version's scheduled destruction (a secret's versionDestroyTtl delays destroy).

Revision ID: 0014_regional_secrets
Revises: 0009_audit_resource_name_text
Create Date: 2026-12-07 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_regional_secrets"
down_revision = "0013_provider_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sm_secrets") as batch:
        batch.add_column(sa.Column("location", sa.String(64), nullable=False, server_default=""))
    op.drop_index("ux_sm_secret_name", table_name="sm_secrets")
    op.create_index("ux_sm_secret_name", "sm_secrets", ["project_id", "location", "secret_id"], unique=True)
    with op.batch_alter_table("sm_secret_versions") as batch:
        batch.add_column(sa.Column("scheduled_destroy_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sm_secret_versions") as batch:
        batch.drop_column("scheduled_destroy_time")
    op.execute("DELETE FROM sm_secret_versions WHERE secret_uid IN (SELECT uid FROM sm_secrets WHERE location <> '')")
    op.execute("DELETE FROM sm_secrets WHERE location <> ''")
    op.drop_index("ux_sm_secret_name", table_name="sm_secrets")
    op.create_index("ux_sm_secret_name", "sm_secrets", ["project_id", "secret_id"], unique=True)
    with op.batch_alter_table("sm_secrets") as batch:
        batch.drop_column("location")
