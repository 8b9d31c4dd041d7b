"""The importer's SQL: what a repository already holds (to skip it), and import runs."""

from __future__ import annotations

import time
from typing import Any

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


# -- import runs (importer/status.py) ------------------------------------------

def start_run(store: MetadataStore, source: str, host: str, stats: str) -> int:
    now = time.time()
    with store.write() as conn:
        return conn.execute(
            t.import_runs.insert().values(
                source=source[:1024], host=host[:255], state="running", started_at=now,
                updated_at=now, stats=stats, problems="[]",
            )
        ).inserted_primary_key[0]


def update_run(
    store: MetadataStore, run_id: int, stats: str, problems: str,
    state: str | None = None, error: str | None = None,
) -> None:
    now = time.time()
    values: dict[str, Any] = {"updated_at": now, "stats": stats, "problems": problems}
    if state is not None:
        values.update(state=state, finished_at=now, error=error)
    with store.write() as conn:
        conn.execute(t.import_runs.update().where(t.import_runs.c.id == run_id).values(**values))


def runs(store: MetadataStore, limit: int, before: int | None) -> list[dict[str, Any]]:
    """Newest first, without their problems."""
    r = t.import_runs
    query = sa.select(*(c for c in r.c if c.name != "problems")).order_by(r.c.id.desc())
    if before is not None:
        query = query.where(r.c.id < before)
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query.limit(limit))]


def run(store: MetadataStore, run_id: int) -> dict[str, Any] | None:
    with store.read() as conn:
        row = conn.execute(
            sa.select(t.import_runs).where(t.import_runs.c.id == run_id)
        ).first()
    return dict(row._mapping) if row else None
