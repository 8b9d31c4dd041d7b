"""mirror_sync_runs: prefetch runs of the pull-through cache, for the API and the UI

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 01:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mirror_sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_by", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("tags_total", sa.Integer(), nullable=False),
        sa.Column("tags_done", sa.Integer(), nullable=False),
        sa.Column("tags_failed", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mirror_sync_runs_upstream", "mirror_sync_runs",
                    ["upstream", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_mirror_sync_runs_upstream", table_name="mirror_sync_runs")
    op.drop_table("mirror_sync_runs")
