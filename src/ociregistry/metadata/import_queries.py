"""What a repository already holds, for the importer to skip (one query each)."""

from __future__ import annotations

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


def _repository_id(conn: sa.Connection, name: str) -> int | None:
    return conn.execute(
        sa.select(t.repositories.c.id).where(t.repositories.c.name == name)
    ).scalar()


def repository_contents(
    store: MetadataStore, name: str
) -> tuple[set[str], dict[str, str], set[str]]:
    """(manifest digests, tag -> digest, linked blob digests) of a repository."""
    m, tg, rb = t.manifests, t.tags, t.repository_blobs
    with store.read() as conn:
        repo_id = _repository_id(conn, name)
        if repo_id is None:
            return set(), {}, set()
        manifests = set(
            conn.execute(sa.select(m.c.digest).where(m.c.repository_id == repo_id)).scalars()
        )
        tags = {
            tag: digest
            for tag, digest in conn.execute(
                sa.select(tg.c.name, m.c.digest)
                .select_from(tg.join(m, m.c.id == tg.c.manifest_id))
                .where(tg.c.repository_id == repo_id)
            )
        }
        blobs = set(
            conn.execute(sa.select(rb.c.digest).where(rb.c.repository_id == repo_id)).scalars()
        )
    return manifests, tags, blobs


def link_stored_blob(store: MetadataStore, name: str, digest: str, exists: object) -> int | None:
    """Link a blob this registry already stores into ``name``; its size, or None.

    ``exists(digest)`` asks the storage, under the digest lock, that the bytes
    are still there (a GC may have swept an unreferenced copy).
    """
    with store.write() as conn:
        store.lock_digest(conn, digest)
        size = store.blob_size(conn, digest)
        if size is None or not exists(digest):  # type: ignore[operator]
            return None
        repo_id = store.ensure_repository(conn, name)
        store.record_blob(conn, repo_id, digest, size)
    return size
