"""quotas, quota_repositories, quota_blobs: exact deduplicated usage per namespace

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 22:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NAME = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pattern", NAME, nullable=False),
        sa.Column("limit_bytes", sa.BigInteger(), nullable=False),
        sa.Column("warning_bytes", sa.BigInteger(), nullable=True),
        sa.Column("blob_bytes", sa.BigInteger(), nullable=False),
        sa.Column("upload_bytes", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pattern"),
    )
    op.create_table(
        "quota_repositories",
        sa.Column("quota_id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["quota_id"], ["quotas.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("quota_id", "repository_id"),
    )
    op.create_index("ix_quota_repositories_repository", "quota_repositories",
                    ["repository_id"])
    op.create_table(
        "quota_blobs",
        sa.Column("quota_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("refs", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["quota_id"], ["quotas.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("quota_id", "digest"),
    )


def downgrade() -> None:
    op.drop_table("quota_blobs")
    op.drop_index("ix_quota_repositories_repository", table_name="quota_repositories")
    op.drop_table("quota_repositories")
    op.drop_table("quotas")
