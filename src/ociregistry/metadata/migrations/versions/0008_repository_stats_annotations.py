"""repository_stats, manifest_annotations: maintained figures for listing and search

repository_stats: each repository's deduplicated size, maintained on manifest writes.
manifest_annotations: a manifest's annotations one row per key, for indexed search.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 20:30:00.000000
"""

import json

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
    upgrade_annotations()


KEY, VALUE = 255, 400  # schema.ANNOTATION_KEY, ANNOTATION_VALUE when this was written


def _annotation_rows(manifest_id: int, text: str | None) -> list[dict]:
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    return [{"manifest_id": manifest_id, "key": k, "value": v[:VALUE]}
            for k, v in doc.items()
            if isinstance(k, str) and isinstance(v, str) and len(k) <= KEY]


def upgrade_annotations() -> None:
    table = op.create_table(
        "manifest_annotations",
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(KEY).with_variant(sa.String(KEY, collation="C"),
                                                     "postgresql"), nullable=False),
        sa.Column("value", sa.String(VALUE).with_variant(sa.String(VALUE, collation="C"),
                                                         "postgresql"), nullable=False),
        sa.ForeignKeyConstraint(["manifest_id"], ["manifests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("manifest_id", "key"),
    )
    op.create_index("ix_manifest_annotations_key", "manifest_annotations", ["key"])
    op.create_index("ix_manifest_annotations_value", "manifest_annotations", ["value"])
    conn = op.get_bind()
    manifests = sa.table("manifests", sa.column("id", sa.Integer),
                         sa.column("annotations", sa.Text))
    last = 0
    while True:  # in batches, by id
        batch = conn.execute(
            sa.select(manifests.c.id, manifests.c.annotations)
            .where(manifests.c.id > last, manifests.c.annotations.is_not(None))
            .order_by(manifests.c.id).limit(1000)
        ).all()
        if not batch:
            return
        rows = [row for mid, text in batch for row in _annotation_rows(mid, text)]
        if rows:
            conn.execute(table.insert(), rows)
        last = batch[-1][0]


def downgrade() -> None:
    op.drop_index("ix_manifest_annotations_value", table_name="manifest_annotations")
    op.drop_index("ix_manifest_annotations_key", table_name="manifest_annotations")
    op.drop_table("manifest_annotations")
    op.drop_index("ix_repository_stats_size", table_name="repository_stats")
    op.drop_table("repository_stats")
