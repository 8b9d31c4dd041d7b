"""tag_history, retained_manifests, retained_manifest_refs, tag_rules: tag lifecycle

tag_history: every tag change (push, move, delete, restore), by whom and when.
retained_manifests (+ refs): manifests deleted by digest, kept while restorable.
tag_rules: immutable and protected tag rules managed at run time.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 22:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAME = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")
DIGEST = sa.String(160)


def upgrade() -> None:
    op.create_table(
        "tag_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("tag", NAME, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("digest", DIGEST, nullable=True),
        sa.Column("previous_digest", DIGEST, nullable=True),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_name", sa.String(255), nullable=True),
        sa.Column("actor_address", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tag_history_tag", "tag_history", ["repository_id", "tag", "id"])
    op.create_index("ix_tag_history_digest", "tag_history", ["repository_id", "digest", "at"])
    op.create_index("ix_tag_history_previous", "tag_history",
                    ["repository_id", "previous_digest", "at"])
    op.create_index("ix_tag_history_at", "tag_history", ["at"])
    op.create_table(
        "retained_manifests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("subject", DIGEST, nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id"], ["repositories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repository_id", "digest", name="uq_retained_manifests_digest"),
    )
    op.create_index("ix_retained_manifests_subject", "retained_manifests",
                    ["repository_id", "subject"])
    op.create_table(
        "retained_manifest_refs",
        sa.Column("retained_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.ForeignKeyConstraint(["retained_id"], ["retained_manifests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("retained_id", "kind", "digest"),
    )
    op.create_index("ix_retained_manifest_refs_digest", "retained_manifest_refs",
                    ["digest", "kind"])
    op.create_table(
        "tag_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("repositories", sa.String(512), nullable=False),
        sa.Column("tags", sa.String(255), nullable=False),
        sa.Column("users", sa.Text(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("tag_rules")
    op.drop_index("ix_retained_manifest_refs_digest", table_name="retained_manifest_refs")
    op.drop_table("retained_manifest_refs")
    op.drop_index("ix_retained_manifests_subject", table_name="retained_manifests")
    op.drop_table("retained_manifests")
    for name in ("ix_tag_history_at", "ix_tag_history_previous", "ix_tag_history_digest",
                 "ix_tag_history_tag"):
        op.drop_index(name, table_name="tag_history")
    op.drop_table("tag_history")
