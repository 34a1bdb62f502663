"""GKE clusters, node pools and Kubernetes objects.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 05:00:00
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gke_clusters",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(30), nullable=False, index=True),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("workload_pool", sa.String(128), nullable=False),
        sa.Column("autopilot", sa.Boolean(), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issuer_key_pem", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ux_gke_cluster_name", "gke_clusters", ["project_id", "location", "name"], unique=True)
    op.create_table(
        "gke_node_pools",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("cluster_id", sa.String(36), nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("workload_metadata_mode", sa.String(32), nullable=False),
        sa.Column("service_account", sa.String(256), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ux_gke_node_pool_name", "gke_node_pools", ["cluster_id", "name"], unique=True)
    op.create_table(
        "gke_nodes",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("cluster_id", sa.String(36), nullable=False, index=True),
        sa.Column("node_pool_id", sa.String(36), nullable=False, index=True),
        sa.Column("internal_ip", sa.String(45), nullable=False),
    )
    op.create_table(
        "k8s_objects",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("cluster_id", sa.String(36), nullable=False, index=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("uid", sa.String(36), nullable=False, unique=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("pod_ip", sa.String(45), nullable=True, index=True),
    )
    op.create_index("ux_k8s_object", "k8s_objects", ["cluster_id", "kind", "namespace", "name"], unique=True)


def downgrade() -> None:
    for table in ("k8s_objects", "gke_nodes", "gke_node_pools", "gke_clusters"):
        op.drop_table(table)
