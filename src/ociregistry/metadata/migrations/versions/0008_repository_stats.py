"""repository_stats: each repository's deduplicated size, maintained on manifest writes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 20:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BACKFILL = """
INSERT INTO repository_stats (repository_id, size)
SELECT r.id, COALESCE((
    SELECT SUM(b.size) FROM blobs b WHERE b.digest IN (
        SELECT mb.digest FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id
        WHERE m.repository_id = r.id)
), 0)
FROM repositories r
"""


def upgrade() -> None:
    op.create_table(
        "repository_stats",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id"),
    )
    op.create_index("ix_repository_stats_size", "repository_stats", ["size"])
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index("ix_repository_stats_size", table_name="repository_stats")
    op.drop_table("repository_stats")
