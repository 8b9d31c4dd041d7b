"""indexes for the web UI: last push per repository, tags by push time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 12:00:00.000000
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A repository's tags newest first, and its last tag update (MAX per repository).
    op.create_index("ix_tags_repository_updated", "tags", ["repository_id", "updated_at"])
    # Recent pushes across the registry (ORDER BY updated_at DESC LIMIT n).
    op.create_index("ix_tags_updated", "tags", ["updated_at"])
    # A repository's last manifest push (MAX(created_at) per repository).
    op.create_index("ix_manifests_repository_created", "manifests",
                    ["repository_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_manifests_repository_created", table_name="manifests")
    op.drop_index("ix_tags_updated", table_name="tags")
    op.drop_index("ix_tags_repository_updated", table_name="tags")
