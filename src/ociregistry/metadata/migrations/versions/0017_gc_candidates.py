"""gc_manifest_candidates, gc_blob_candidates: what may have become garbage since the last GC

Triggers record every manifest that may have lost what kept it alive (pushed, a
tag deleted or moved off it, its index or its subject deleted) and every blob
that may have lost its last reference (uploaded, a manifest's reference to it
deleted). The GC examines these rows only, not every manifest and blob, so its
time follows the garbage, not the size of the registry. Triggers, not the
application, write them, so that no writer (push, tag API, retention, import,
restore) can forget one. The existing data is seeded once here.

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-05 02:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# (name, table, event, row condition or "", SQL selecting the rows to record: OLD/NEW)
MANIFEST_TRIGGERS = [
    ("gc_cand_manifest_insert", "manifests", "INSERT", "", "SELECT NEW.id"),
    ("gc_cand_tag_delete", "tags", "DELETE", "", "SELECT OLD.manifest_id"),
    ("gc_cand_tag_move", "tags", "UPDATE OF manifest_id",
     "OLD.manifest_id <> NEW.manifest_id", "SELECT OLD.manifest_id"),
    ("gc_cand_parent_delete", "manifest_children", "DELETE", "",
     "SELECT id FROM manifests WHERE repository_id = OLD.repository_id"
     " AND digest = OLD.child_digest"),
    ("gc_cand_subject_delete", "manifests", "DELETE", "",
     "SELECT id FROM manifests WHERE repository_id = OLD.repository_id"
     " AND subject = OLD.digest"),
]
BLOB_TRIGGERS = [
    ("gc_cand_blob_insert", "blobs", "INSERT", "", "SELECT NEW.digest"),
    ("gc_cand_reference_delete", "manifest_blobs", "DELETE", "", "SELECT OLD.digest"),
]


def _triggers() -> list[tuple[str, str, str, str, str, str]]:
    return ([(*trigger, "gc_manifest_candidates", "manifest_id") for trigger in MANIFEST_TRIGGERS]
            + [(*trigger, "gc_blob_candidates", "digest") for trigger in BLOB_TRIGGERS])


def upgrade() -> None:
    op.create_table(
        "gc_manifest_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "gc_blob_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, event, when, select, target, column in _triggers():
        insert = f"INSERT INTO {target} ({column}) {select}"
        if postgres:
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
                       f" BEGIN {insert}; RETURN NULL; END $$")
            condition = f" WHEN ({when.replace('<>', 'IS DISTINCT FROM')})" if when else ""
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW"
                       f"{condition} EXECUTE FUNCTION {name}()")
        else:
            condition = f" WHEN {when}" if when else ""
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW"
                       f"{condition} BEGIN {insert}; END")
    # What is garbage or may become it now: untagged manifests, unreferenced blobs.
    op.execute("INSERT INTO gc_manifest_candidates (manifest_id) SELECT id FROM manifests"
               " WHERE NOT EXISTS (SELECT 1 FROM tags WHERE tags.manifest_id = manifests.id)")
    op.execute("INSERT INTO gc_blob_candidates (digest) SELECT digest FROM blobs"
               " WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs"
               " WHERE manifest_blobs.digest = blobs.digest)")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, *_ in _triggers():
        op.execute(f"DROP TRIGGER {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("gc_blob_candidates")
    op.drop_table("gc_manifest_candidates")
