"""Managed Workload Identity in workload identity pools (issue #20): the pool's mode and its
attestation rules, namespaces, and namespaces' managed identities with their attestation rules.

Revision ID: 0015_managed_workload_identity
Revises: 0014_regional_secrets
Create Date: 2026-12-07 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0015_managed_workload_identity"
down_revision = "0014_regional_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workload_identity_pools") as batch:
        batch.add_column(sa.Column("mode", sa.String(32), nullable=True))
        batch.add_column(sa.Column("attestation_rules", sa.JSON(), nullable=True))
    op.create_table(
        "workload_identity_pool_namespaces",
        sa.Column("name", sa.String(400), primary_key=True),
        sa.Column("pool_name", sa.String(300), nullable=False),
        sa.Column("namespace_id", sa.String(64), nullable=False),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_workload_identity_pool_namespaces_pool_name", "workload_identity_pool_namespaces",
                    ["pool_name"])
    op.create_table(
        "workload_identity_pool_managed_identities",
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("namespace_name", sa.String(400), nullable=False),
        sa.Column("managed_identity_id", sa.String(64), nullable=False),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attestation_rules", sa.JSON(), nullable=False),
    )
    op.create_index("ix_workload_identity_pool_managed_identities_namespace_name",
                    "workload_identity_pool_managed_identities", ["namespace_name"])


def downgrade() -> None:
    op.drop_index("ix_workload_identity_pool_managed_identities_namespace_name",
                  "workload_identity_pool_managed_identities")
    op.drop_table("workload_identity_pool_managed_identities")
    op.drop_index("ix_workload_identity_pool_namespaces_pool_name", "workload_identity_pool_namespaces")
    op.drop_table("workload_identity_pool_namespaces")
    with op.batch_alter_table("workload_identity_pools") as batch:
        batch.drop_column("attestation_rules")
        batch.drop_column("mode")
