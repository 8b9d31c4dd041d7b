"""repositories.tags_version: bumped by triggers whenever a repository's tag names change

A tag created, deleted or renamed (not moved: the list of names stays the same)
adds one to its repository's ``tags_version`` in the same transaction, whatever
wrote it (push, tag API, retention, import, GC, a cascade); on PostgreSQL at the
commit (deferred constraint triggers: the row lock comes last, see upgrade()). The /v2 tags list
keeps a page it built under the version it read in the same statement
(metadata/tag_list_cache.py) and serves it again only while the version is
unchanged: exact across workers and instances, since every request reads the
version from the database.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 08:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BUMP = "UPDATE repositories SET tags_version = tags_version + 1 WHERE id = {row}.repository_id"
# (name, event, row condition or "", statements)
TRIGGERS = [
    ("tags_version_insert", "INSERT", "", [BUMP.format(row="NEW")]),
    ("tags_version_delete", "DELETE", "", [BUMP.format(row="OLD")]),
    ("tags_version_rename", "UPDATE OF name, repository_id",
     "OLD.name <> NEW.name OR OLD.repository_id <> NEW.repository_id",
     [BUMP.format(row="OLD"), BUMP.format(row="NEW")]),
]


def upgrade() -> None:
    op.add_column("repositories", sa.Column("tags_version", sa.BigInteger(), nullable=False,
                                            server_default="0"))
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, event, when, statements in TRIGGERS:
        body = "".join(f"{s}; " for s in statements)
        if postgres:
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
                       f" BEGIN {body}RETURN NULL; END $$")
            condition = f" WHEN ({when.replace('<>', 'IS DISTINCT FROM')})" if when else ""
            # Deferred to the commit: the repository row's lock is then the transaction's
            # last, taken after every other (manifest locks, quota and stats rows). Taken
            # at the tag's statement, a retention batch (tag deleted, then the next
            # manifest's lock) and a push (that manifest's lock, then its tag) deadlock.
            op.execute(f"CREATE CONSTRAINT TRIGGER {name} AFTER {event} ON tags"
                       f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                       f"{condition} EXECUTE FUNCTION {name}()")
        else:
            condition = f" WHEN {when}" if when else ""
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON tags FOR EACH ROW"
                       f"{condition} BEGIN {body}END")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, *_ in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}" + (" ON tags" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION {name}()")
    op.drop_column("repositories", "tags_version")  # SQLite >= 3.35: ALTER TABLE DROP COLUMN
