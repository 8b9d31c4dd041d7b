"""Queries for operators' commands: integrity check and storage usage."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import quota_accounting
from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


def iter_blob_rows(store: MetadataStore, page: int = 1000) -> Iterator[tuple[str, int]]:
    """Every (digest, size) in the index, in pages (no long-held read)."""
    last = ""
    while True:
        query = (
            sa.select(t.blobs.c.digest, t.blobs.c.size)
            .where(t.blobs.c.digest > last)
            .order_by(t.blobs.c.digest)
            .limit(page)
        )
        with store.read() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield from ((digest, size) for digest, size in rows)
        last = rows[-1][0]


def count_blob_rows(store: MetadataStore) -> int:
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t.blobs)).scalar()


def iter_manifests(store: MetadataStore, page: int = 500) -> Iterator[tuple[int, str, str, bytes]]:
    """(id, digest, media type, payload) of every manifest, in pages."""
    last = 0
    m = t.manifests
    while True:
        query = (
            sa.select(m.c.id, m.c.digest, m.c.media_type, m.c.payload)
            .where(m.c.id > last)
            .order_by(m.c.id)
            .limit(page)
        )
        with store.read() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield from (tuple(row) for row in rows)
        last = rows[-1][0]


def manifests_referencing(store: MetadataStore, digest: str) -> int:
    with store.read() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(t.manifest_blobs.c.digest == digest)
        ).scalar()


def dangling_references(store: MetadataStore) -> list[tuple[str, str, str]]:
    """(repository, manifest digest, blob digest) where the blob has no index row."""
    m, mb, r = t.manifests, t.manifest_blobs, t.repositories
    query = (
        sa.select(r.c.name, m.c.digest, mb.c.digest)
        .select_from(mb.join(m, m.c.id == mb.c.manifest_id).join(r, r.c.id == m.c.repository_id))
        .where(~sa.exists().where(t.blobs.c.digest == mb.c.digest))
        .order_by(r.c.name, m.c.digest)
    )
    with store.read() as conn:
        return [tuple(row) for row in conn.execute(query)]


def blob_touched_at(store: MetadataStore, digest: str) -> float | None:
    """When an upload or mount last touched the blob (None: no row)."""
    with store.read() as conn:
        return conn.execute(
            sa.select(t.blobs.c.touched_at).where(t.blobs.c.digest == digest)
        ).scalar()


def _forget(store: MetadataStore, conn: Connection, digest: str) -> None:
    quota_accounting.drop_all_links(store, conn, digest)
    conn.execute(t.repository_blobs.delete().where(t.repository_blobs.c.digest == digest))
    conn.execute(t.blobs.delete().where(t.blobs.c.digest == digest))


def forget_missing_blob(store: MetadataStore, digest: str, exists: Callable[[str], bool]) -> bool:
    """Drop the row and links of a blob whose bytes are gone, so clients push it
    again; False when, under the digest's lock uploads take, the bytes are back."""
    with store.write() as conn:
        store.lock_digest(conn, digest)
        if store.blob_size(conn, digest) is None or exists(digest):
            return False
        _forget(store, conn, digest)
        return True


def forget_blob_untouched_since(store: MetadataStore, digest: str, touched_at: float) -> bool:
    """Drop a corrupt blob's row and links; False when an upload or mount touched
    it since ``touched_at`` (a push of the same digest replaced the bytes judged)."""
    with store.write() as conn:
        store.lock_digest(conn, digest)
        now = conn.execute(
            sa.select(t.blobs.c.touched_at).where(t.blobs.c.digest == digest)
        ).scalar()
        if now is None or now != touched_at:
            return False
        _forget(store, conn, digest)
        return True


def upload_rows(store: MetadataStore) -> dict[str, float]:
    with store.read() as conn:
        return dict(conn.execute(sa.select(t.uploads.c.id, t.uploads.c.updated_at)).all())


def delete_upload_row(store: MetadataStore, upload_id: str) -> None:
    with store.write() as conn:
        store.delete_upload(conn, upload_id)


def repository_usage(store: MetadataStore, repository: str | None = None) -> list[dict]:
    """Per repository: bytes its manifests reference, and how many of them are shared."""
    m, mb, b, r = t.manifests, t.manifest_blobs, t.blobs, t.repositories
    # Each (repository, blob) once, however many manifests reference it.
    links = (
        sa.select(m.c.repository_id, mb.c.digest)
        .select_from(mb.join(m, m.c.id == mb.c.manifest_id))
        .distinct()
        .subquery("links")
    )
    shared = (
        sa.select(links.c.digest)
        .group_by(links.c.digest)
        .having(sa.func.count() > 1)
        .subquery("shared")
    )
    is_shared = links.c.digest.in_(sa.select(shared.c.digest))
    query = (
        sa.select(
            r.c.name,
            sa.func.count(links.c.digest),
            sa.func.coalesce(sa.func.sum(b.c.size), 0),
            sa.func.coalesce(sa.func.sum(sa.case((is_shared, b.c.size), else_=0)), 0),
        )
        .select_from(
            links.join(r, r.c.id == links.c.repository_id).join(b, b.c.digest == links.c.digest)
        )
        .group_by(r.c.name)
        .order_by(r.c.name)
    )
    manifest_bytes = sa.select(r.c.name, sa.func.sum(m.c.size)).select_from(
        m.join(r, r.c.id == m.c.repository_id)
    ).group_by(r.c.name)
    if repository is not None:
        query = query.where(r.c.name == repository)
        manifest_bytes = manifest_bytes.where(r.c.name == repository)
    with store.read() as conn:
        sizes = dict(conn.execute(manifest_bytes).all())
        return [
            {
                "repository": name,
                "blobs": blobs,
                "bytes": int(total) + int(sizes.get(name) or 0),
                "shared_bytes": int(shared_bytes),
            }
            for name, blobs, total, shared_bytes in conn.execute(query)
        ]
