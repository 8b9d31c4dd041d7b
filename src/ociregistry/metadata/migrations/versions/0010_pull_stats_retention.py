"""pull statistics and retention: tag_pulls, manifest_pulls, manifest_label_expiry,
retention_policies, retention_runs, retention_deletions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 22:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Name = sa.String(512).with_variant(sa.String(512, collation="C"), "postgresql")
Digest = sa.String(160)


def upgrade() -> None:
    op.create_table(
        "tag_pulls",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", Name, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_pulled_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["repository_id", "name"], ["tags.repository_id", "tags.name"],
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repository_id", "name"),
    )
    op.create_index("ix_tag_pulls_last", "tag_pulls", ["repository_id", "last_pulled_at"])
    op.create_table(
        "manifest_pulls",
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_pulled_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["manifest_id"], ["manifests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("manifest_id"),
    )
    op.create_table(
        "manifest_label_expiry",
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["manifest_id"], ["manifests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("manifest_id"),
    )
    op.create_table(
        "retention_policies",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "retention_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tags_deleted", sa.Integer(), nullable=False),
        sa.Column("manifests_deleted", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retention_runs_policy", "retention_runs", ["policy", "started_at"])
    op.create_table(
        "retention_deletions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("repository", Name, nullable=False),
        sa.Column("tag", Name, nullable=True),
        sa.Column("digest", Digest, nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["retention_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retention_deletions_run", "retention_deletions", ["run_id"])
    op.create_index("ix_retention_deletions_repository", "retention_deletions",
                    ["repository", "deleted_at"])


def downgrade() -> None:
    for index, table in (("ix_retention_deletions_repository", "retention_deletions"),
                         ("ix_retention_deletions_run", "retention_deletions"),
                         ("ix_retention_runs_policy", "retention_runs"),
                         ("ix_tag_pulls_last", "tag_pulls")):
        op.drop_index(index, table_name=table)
    for table in ("retention_deletions", "retention_runs", "retention_policies",
                  "manifest_label_expiry", "manifest_pulls", "tag_pulls"):
        op.drop_table(table)
