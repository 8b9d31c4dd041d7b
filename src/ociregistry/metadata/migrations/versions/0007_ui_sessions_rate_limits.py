"""ui_sessions, rate_limit_buckets, auth_failures: revocable UI sessions, shared rate limits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("stamp", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_ui_sessions_user", "ui_sessions", ["user"])
    op.create_index("ix_ui_sessions_expires", "ui_sessions", ["expires_at"])
    op.create_table(
        "rate_limit_buckets",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_rate_limit_buckets_tat", "rate_limit_buckets", ["tat"])
    op.create_table(
        "auth_failures",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_auth_failures_window", "auth_failures", ["window_start"])


def downgrade() -> None:
    op.drop_index("ix_auth_failures_window", table_name="auth_failures")
    op.drop_table("auth_failures")
    op.drop_index("ix_rate_limit_buckets_tat", table_name="rate_limit_buckets")
    op.drop_table("rate_limit_buckets")
    op.drop_index("ix_ui_sessions_expires", table_name="ui_sessions")
    op.drop_index("ix_ui_sessions_user", table_name="ui_sessions")
    op.drop_table("ui_sessions")
