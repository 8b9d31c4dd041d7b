"""The statements of the small write requests (blob mount and PUT, manifest PUT),
each compiled once per dialect (prepared.once) and run through the driver.

Building and compiling a SQLAlchemy Core statement costs more CPU than SQLite's
answer to it: a manifest PUT to a new repository ran about twenty of them, which
made statement construction and cache-key generation the largest CPU item of the
request after the disk flush. The SQL is the same as the Core forms it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import once

# linked_blob_sizes: one statement per number of digests, up to this many (a
# manifest's layers; larger lists are rare and use the Core form).
MAX_PREPARED_IN = 64


def _insert(conn: Connection, table: sa.Table):  # type: ignore[no-untyped-def]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def repository_id(conn: Connection, name: str) -> int | None:
    r = t.repositories
    return once(conn, "write.repository_id", lambda: sa.select(r.c.id).where(
        r.c.name == sa.bindparam("name"))).rows(conn, name=name).scalar()


def upsert_blob(conn: Connection, digest: str, size: int, now: float) -> None:
    once(conn, "write.upsert_blob", lambda: _insert(conn, t.blobs).values(
        digest=sa.bindparam("digest"), size=sa.bindparam("size"),
        touched_at=sa.bindparam("now")).on_conflict_do_update(
        index_elements=["digest"], set_={"touched_at": sa.bindparam("now")},
    )).rows(conn, digest=digest, size=size, now=now)


def link_blob(conn: Connection, repo_id: int, digest: str, now: float) -> bool:
    """Link the blob into the repository; False when it was linked already."""
    rb = t.repository_blobs
    return once(conn, "write.link_blob", lambda: _insert(conn, rb).values(
        repository_id=sa.bindparam("repo"), digest=sa.bindparam("digest"),
        created_at=sa.bindparam("now")).on_conflict_do_nothing().returning(rb.c.digest),
    ).rows(conn, repo=repo_id, digest=digest, now=now).first() is not None


def linked_blob_size(conn: Connection, digest: str) -> int | None:
    rb, b = t.repository_blobs, t.blobs
    return once(conn, "write.linked_blob_size", lambda: sa.select(b.c.size).where(
        b.c.digest == sa.bindparam("digest"),
        sa.select(rb.c.digest).where(rb.c.digest == sa.bindparam("digest")).exists(),
    )).rows(conn, digest=digest).scalar()


def source_blob_size(conn: Connection, source: str, digest: str) -> int | None:
    """The blob's size when repository ``source`` links it, else None."""
    rb, b, r = t.repository_blobs, t.blobs, t.repositories
    return once(conn, "write.source_blob_size", lambda: sa.select(b.c.size).select_from(
        r.join(rb, rb.c.repository_id == r.c.id).join(b, b.c.digest == rb.c.digest)).where(
        r.c.name == sa.bindparam("source"), rb.c.digest == sa.bindparam("digest"),
    )).rows(conn, source=source, digest=digest).scalar()


def linked_blob_sizes(conn: Connection, repo_id: int, digests: Sequence[str]) -> dict[str, int]:
    """Digest -> stored size of those ``digests`` (distinct) the repository links."""
    rb, b = t.repository_blobs, t.blobs
    n = len(digests)

    def build() -> sa.Select:
        return (sa.select(b.c.digest, b.c.size)
                .select_from(rb.join(b, b.c.digest == rb.c.digest))
                .where(rb.c.repository_id == sa.bindparam("repo"),
                       rb.c.digest.in_([sa.bindparam(f"d{i}") for i in range(n)])))

    params = {f"d{i}": d for i, d in enumerate(digests)}
    if n > MAX_PREPARED_IN:
        return dict(conn.execute(build(), {"repo": repo_id, **params}).all())
    return dict(once(conn, f"write.linked_blob_sizes.{n}", build).rows(
        conn, repo=repo_id, **params).all())


def manifest_id(conn: Connection, repo_id: int, digest: str) -> int | None:
    m = t.manifests
    return once(conn, "write.manifest_id", lambda: sa.select(m.c.id).where(
        m.c.repository_id == sa.bindparam("repo"), m.c.digest == sa.bindparam("digest"),
    )).rows(conn, repo=repo_id, digest=digest).scalar()


_MANIFEST_COLUMNS = ("repository_id", "digest", "media_type", "size", "payload", "subject",
                     "artifact_type", "annotations", "created_at")


def insert_manifest(conn: Connection, **values: object) -> int:
    """Insert a manifests row (every column of _MANIFEST_COLUMNS); its id."""
    m = t.manifests
    return once(conn, "write.insert_manifest", lambda: m.insert().values(
        {name: sa.bindparam(name) for name in _MANIFEST_COLUMNS}).returning(m.c.id),
    ).rows(conn, **values).scalar_one()


def insert_manifest_blobs(conn: Connection, manifest_id: int, digests: Sequence[str]) -> None:
    mb = t.manifest_blobs
    statement = once(conn, "write.insert_manifest_blobs", lambda: mb.insert().values(
        manifest_id=sa.bindparam("manifest"), digest=sa.bindparam("digest")))
    statement.many(conn, [{"manifest": manifest_id, "digest": d} for d in digests])


def upsert_tag(conn: Connection, repo_id: int, tag: str, manifest_id: int, now: float) -> None:
    tg = t.tags
    once(conn, "write.upsert_tag", lambda: _insert(conn, tg).values(
        repository_id=sa.bindparam("repo"), name=sa.bindparam("tag"),
        manifest_id=sa.bindparam("manifest"), updated_at=sa.bindparam("now"),
    ).on_conflict_do_update(
        index_elements=["repository_id", "name"],
        set_={"manifest_id": sa.bindparam("manifest"), "updated_at": sa.bindparam("now")},
    )).rows(conn, repo=repo_id, tag=tag, manifest=manifest_id, now=now)




# -- upload sessions (upload_store.py) ---------------------------------------------
_UPLOAD_COLUMNS = ("id", "repository_id", "algorithm", "size", "created_at", "updated_at",
                   "owner")


def create_upload(conn: Connection, **values: object) -> None:
    """Insert an uploads row (every column of _UPLOAD_COLUMNS)."""
    once(conn, "write.create_upload", lambda: t.uploads.insert().values(
        {name: sa.bindparam(name) for name in _UPLOAD_COLUMNS})).rows(conn, **values)


# The columns get_upload_query() selects, in its order (metadata/upload_store.py).
UPLOAD_ROW_COLUMNS = tuple(c.name for c in t.uploads.c)


def get_upload_query() -> sa.Select:
    """The session's row (every column) if it belongs to repository ``name``."""
    u, r = t.uploads, t.repositories
    return sa.select(u).select_from(u.join(r, r.c.id == u.c.repository_id)).where(
        u.c.id == sa.bindparam("id"), r.c.name == sa.bindparam("name"))


def get_upload(conn: Connection, name: str, upload_id: str) -> dict[str, object] | None:
    """The session's row (every column) if it belongs to repository ``name``."""
    row = once(conn, "write.get_upload", get_upload_query).rows(
        conn, id=upload_id, name=name).mapping()
    if row is None:
        return None
    out = dict(row)
    if out["hash_state"] is not None:
        out["hash_state"] = bytes(out["hash_state"])  # the driver may hand a memoryview
    return out


def delete_upload(conn: Connection, upload_id: str) -> tuple[int, int] | None:
    """Delete the session's row: its (repository_id, size), None when there was none."""
    u = t.uploads
    row = once(conn, "write.delete_upload", lambda: u.delete().where(
        u.c.id == sa.bindparam("id")).returning(u.c.repository_id, u.c.size),
    ).rows(conn, id=upload_id).first()
    return (row[0], row[1]) if row else None


def insert_repository(conn: Connection, name: str, now: float) -> int | None:
    """A new repository's id; None when it exists (made meanwhile by another transaction).
    RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT."""
    r = t.repositories
    return once(conn, "write.insert_repository", lambda: _insert(conn, r).values(
        name=sa.bindparam("name"), created_at=sa.bindparam("now"),
    ).on_conflict_do_nothing().returning(r.c.id)).rows(conn, name=name, now=now).scalar()


def save_upload(conn: Connection, upload_id: str, **values: object) -> bool:
    """Record a session's progress (size, updated_at, hash_state, storage_state);
    False when the session is gone."""
    u = t.uploads
    return once(conn, "write.save_upload", lambda: u.update().where(
        u.c.id == sa.bindparam("upload_id")).values(
        {name: sa.bindparam(name) for name in ("size", "updated_at", "hash_state",
                                               "storage_state")}),
    ).rows(conn, upload_id=upload_id, **values).rowcount > 0
