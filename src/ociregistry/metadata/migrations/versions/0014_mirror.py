"""mirror: tag freshness, fill leases and upstream state of the pull-through cache

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 01:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Name = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "mirror_tags",
        sa.Column("repository", Name, nullable=False),
        sa.Column("reference", sa.String(length=160), nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=True),
        sa.Column("checked_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("repository", "reference"),
    )
    op.create_index("ix_mirror_tags_upstream", "mirror_tags", ["upstream", "checked_at"])
    op.create_table(
        "mirror_fills",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "mirror_upstreams",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rate_limited_until", sa.Float(), nullable=True),
        sa.Column("ratelimit_remaining", sa.Integer(), nullable=True),
        sa.Column("last_ok_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_error_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("mirror_upstreams")
    op.drop_table("mirror_fills")
    op.drop_index("ix_mirror_tags_upstream", table_name="mirror_tags")
    op.drop_table("mirror_tags")
