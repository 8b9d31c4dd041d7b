"""events, event_endpoints, event_deliveries, event_redeliveries: webhooks (outbox)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 22:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Name = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("uid", sa.String(36), nullable=False, unique=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("repository", Name, nullable=True),
        sa.Column("digest", sa.String(160), nullable=True),
        sa.Column("media_type", sa.String(255), nullable=True),
        sa.Column("artifact_type", sa.String(255), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_events_created", "events", ["created_at"])
    op.create_table(
        "event_endpoints",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("head_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "event_deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("response", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["event_endpoints.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_event_deliveries_endpoint", "event_deliveries", ["endpoint_id", "id"])
    op.create_index("ix_event_deliveries_event", "event_deliveries", ["event_id"])
    op.create_table(
        "event_redeliveries",
        sa.Column("endpoint_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["event_endpoints.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("endpoint_id", "event_id"),
    )


def downgrade() -> None:
    op.drop_table("event_redeliveries")
    op.drop_index("ix_event_deliveries_event", table_name="event_deliveries")
    op.drop_index("ix_event_deliveries_endpoint", table_name="event_deliveries")
    op.drop_table("event_deliveries")
    op.drop_table("event_endpoints")
    op.drop_index("ix_events_created", table_name="events")
    op.drop_table("events")
