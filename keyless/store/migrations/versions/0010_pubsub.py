"""Pub/Sub topics, subscriptions, messages, deliveries and snapshots (issue #20).

Revision ID: 0010_pubsub
Revises: 0009_audit_resource_name_text
Create Date: 2026-12-07 13:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0010_pubsub"
down_revision = "0009_audit_resource_name_text"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ps_topics",
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(30), nullable=False),
        sa.Column("topic_id", sa.String(255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ux_ps_topic_name", "ps_topics", ["project_id", "topic_id"], unique=True)
    op.create_table(
        "ps_subscriptions",
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(30), nullable=False),
        sa.Column("subscription_id", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(600), nullable=False),
        sa.Column("topic_uid", sa.String(36), nullable=True),
        sa.Column("ack_deadline_seconds", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
    )
    op.create_index("ux_ps_subscription_name", "ps_subscriptions", ["project_id", "subscription_id"], unique=True)
    op.create_index("ix_ps_subscriptions_topic_uid", "ps_subscriptions", ["topic_uid"])
    op.create_table(
        "ps_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("topic_uid", sa.String(36), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("ordering_key", sa.String(1024), nullable=False),
        sa.Column("publish_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ps_messages_topic_uid", "ps_messages", ["topic_uid"])
    op.create_table(
        "ps_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("subscription_uid", sa.String(36), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("ordering_key", sa.String(1024), nullable=False),
        sa.Column("publish_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("visible_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ack_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("acked", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_ps_deliveries_ack_id", "ps_deliveries", ["ack_id"])
    op.create_index("ix_ps_delivery_ready", "ps_deliveries", ["subscription_uid", "acked", "id"])
    op.create_table(
        "ps_snapshots",
        sa.Column("uid", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(30), nullable=False),
        sa.Column("snapshot_id", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(600), nullable=False),
        sa.Column("topic_uid", sa.String(36), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("unacked", sa.JSON(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ux_ps_snapshot_name", "ps_snapshots", ["project_id", "snapshot_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_ps_snapshot_name", table_name="ps_snapshots")
    op.drop_table("ps_snapshots")
    op.drop_index("ix_ps_delivery_ready", table_name="ps_deliveries")
    op.drop_index("ix_ps_deliveries_ack_id", table_name="ps_deliveries")
    op.drop_table("ps_deliveries")
    op.drop_index("ix_ps_messages_topic_uid", table_name="ps_messages")
    op.drop_table("ps_messages")
    op.drop_index("ix_ps_subscriptions_topic_uid", table_name="ps_subscriptions")
    op.drop_index("ux_ps_subscription_name", table_name="ps_subscriptions")
    op.drop_table("ps_subscriptions")
    op.drop_index("ux_ps_topic_name", table_name="ps_topics")
    op.drop_table("ps_topics")
