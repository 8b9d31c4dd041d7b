"""Queries of the online garbage collector. Each deletion re-checks its
conditions inside a write transaction, so a concurrent push always wins or
fails cleanly: it never ends up referencing something the sweep removed."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator

import sqlalchemy as sa

from ociregistry.metadata import backup_lease, quota_accounting
from ociregistry.metadata import schema as t
from ociregistry.metadata import tag_history_queries as history
from ociregistry.metadata.store import MetadataStore


def _not_in(column: sa.ColumnElement, ids: Collection[int]) -> list[sa.ColumnElement[bool]]:
    """``column NOT IN ids``, the ids inlined (no bound-parameter limit); nothing if empty."""
    if not ids:
        return []
    return [column.not_in(sa.bindparam(None, sorted(ids), expanding=True, literal_execute=True))]


def _untagged_condition(
    m: sa.Table, cutoff: float, gone: Collection[int] = (), keep_since: float | None = None,
    history_keeps: bool = True,
) -> list[sa.ColumnElement[bool]]:
    """``gone``: manifests to treat as already deleted (a dry run's earlier rounds);
    ``keep_since``: tag history since then keeps the digests it names (restores);
    ``history_keeps`` False: retention, whose deletions are retained for restores by
    the tag hook itself, decides without it (so its real run deletes its dry run's list)."""
    parent = t.manifest_children.alias("parent")
    subject = t.manifests.alias("subject_manifest")
    return [
        m.c.created_at < cutoff,
        *_not_in(m.c.id, gone),
        ~sa.exists().where(t.tags.c.manifest_id == m.c.id),
        # never the children of an index that is still there...
        ~sa.exists().where(
            parent.c.repository_id == m.c.repository_id,
            parent.c.child_digest == m.c.digest,
            *_not_in(parent.c.manifest_id, gone),
        ),
        # ...nor the referrers of a manifest that is still there
        ~sa.exists().where(
            subject.c.repository_id == m.c.repository_id,
            subject.c.digest == m.c.subject,
            *_not_in(subject.c.id, gone),
        ),
        *([~history.manifest_kept(m, keep_since)] if history_keeps else []),
    ]


def _ids(ids: Collection) -> sa.BindParameter:
    return sa.bindparam(None, sorted(ids), expanding=True, literal_execute=True)


# Candidates examined per statement. The candidates are read first and then named by
# key, a chunk at a time: a statement over the whole candidate set, with a dry run's
# thousands of "gone" ids beside it, led PostgreSQL (at 1 million manifests) to scan
# every manifest and every blob link instead of looking up the candidates (7 s and 5 s
# for 9,510 candidates); a chunk this small always costs less looked up by key. The
# same for what the "gone" manifests free (their children, referrers and blobs).
CHUNK = 1000
FREED_CHUNK = 250  # gone manifests per look-up of what they free: index probes, not a scan


def _chunks(values: Collection, size: int = CHUNK) -> Iterator[list]:
    ordered = sorted(values)
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def manifest_candidates(gone: Collection[int] = ()) -> sa.Select:
    """Ids of the manifests that may be garbage: those the triggers of migration 0017
    recorded (pushed, or lost a tag, an index or a subject), and, for a dry run that
    counts ``gone`` as deleted, the children and referrers those deletions would free."""
    query: sa.Select = sa.select(t.gc_manifest_candidates.c.manifest_id)
    if not gone:
        return query
    return sa.union(query, _freed_by(gone))  # type: ignore[return-value]


def _freed_by(gone: Collection[int]) -> sa.CompoundSelect:
    """Ids of the children and referrers of the manifests ``gone``."""
    m, child, subject = t.manifests, t.manifest_children, t.manifests.alias("gone_subject")
    children = sa.select(m.c.id).select_from(child.join(m, sa.and_(
        m.c.repository_id == child.c.repository_id, m.c.digest == child.c.child_digest))
    ).where(child.c.manifest_id.in_(_ids(gone)))
    referrers = sa.select(m.c.id).select_from(subject.join(m, sa.and_(
        m.c.repository_id == subject.c.repository_id, m.c.subject == subject.c.digest))
    ).where(subject.c.id.in_(_ids(gone)))
    return sa.union(children, referrers)


def untagged_manifests(
    store: MetadataStore, cutoff: float, gone: Collection[int] = (),
    keep_since: float | None = None,
) -> list[tuple[int, str, str]]:
    """(id, repository, digest) of manifests nothing keeps alive, among the candidates."""
    m = t.manifests
    found: list[tuple[int, str, str]] = []
    with store.read() as conn:
        ids = set(conn.execute(manifest_candidates()).scalars())
        for chunk in _chunks(gone, FREED_CHUNK):  # what the manifests counted as gone free
            ids.update(conn.execute(_freed_by(chunk)).scalars())
        ids.difference_update(gone)
        for chunk in _chunks(ids):
            query = (
                sa.select(m.c.id, t.repositories.c.name, m.c.digest)
                .select_from(m.join(t.repositories, t.repositories.c.id == m.c.repository_id))
                .where(m.c.id.in_(_ids(chunk)), *_untagged_condition(m, cutoff, gone, keep_since))
                .order_by(m.c.id)
            )
            found.extend(tuple(row) for row in conn.execute(query))  # type: ignore[misc]
    return found


def delete_untagged_manifest(
    store: MetadataStore, manifest_id: int, cutoff: float, keep_since: float | None = None
) -> bool:
    m = t.manifests
    with store.write() as conn:
        row = conn.execute(
            sa.select(m.c.repository_id, m.c.digest).where(m.c.id == manifest_id)
        ).first()
        if row is None:
            return False
        # against a push that re-tags it or references it as an index child
        store.lock_manifest(conn, row.repository_id, row.digest)
        still = conn.execute(
            sa.select(m.c.id).where(
                m.c.id == manifest_id, *_untagged_condition(m, cutoff, keep_since=keep_since))
        ).first()
        if still is None:
            return False
        store._delete_manifest_rows(conn, [manifest_id])
        return True


def _unreferenced(
    b: sa.Table, cutoff: float, gone: Collection[int] = (), keep_since: float | None = None
) -> list[sa.ColumnElement[bool]]:
    mb = t.manifest_blobs
    return [
        b.c.touched_at < cutoff,
        ~sa.exists().where(mb.c.digest == b.c.digest, *_not_in(mb.c.manifest_id, gone)),
        ~history.blob_kept(b, keep_since),  # a manifest deleted by digest, kept for restores
    ]


def unreferenced_blobs(
    store: MetadataStore, cutoff: float, gone: Collection[int] = (),
    keep_since: float | None = None,
) -> list[tuple[str, int]]:
    b, mb = t.blobs, t.manifest_blobs
    found: list[tuple[str, int]] = []
    with store.read() as conn:
        digests = set(conn.execute(sa.select(t.gc_blob_candidates.c.digest)).scalars())
        for chunk in _chunks(gone, FREED_CHUNK):  # a dry run: what the gone manifests link
            digests.update(conn.execute(
                sa.select(mb.c.digest).where(mb.c.manifest_id.in_(_ids(chunk)))).scalars())
        for chunk in _chunks(digests, FREED_CHUNK):  # probes of manifest_blobs by digest
            # only the gone manifests that link these blobs: a short list to plan
            near = {manifest_id for manifest_id in conn.execute(
                sa.select(mb.c.manifest_id).where(mb.c.digest.in_(_ids(chunk)))).scalars()
                if manifest_id in gone} if gone else set()
            query = (
                sa.select(b.c.digest, b.c.size)
                .where(b.c.digest.in_(_ids(chunk)), *_unreferenced(b, cutoff, near, keep_since))
                .order_by(b.c.digest)
            )
            found.extend(tuple(row) for row in conn.execute(query))  # type: ignore[misc]
    return found


def delete_blob_if_unreferenced(
    store: MetadataStore, digest: str, cutoff: float, keep_since: float | None = None
) -> bool:
    """Delete the blob's row and links; its bytes go after the commit.

    Bytes removed inside this transaction would be lost if its commit then
    failed: the row would come back with nothing behind it. The caller removes
    them with ``remove_unrecorded_bytes`` once this has committed. Nothing is
    deleted while a backup holds its lease (metadata/backup_lease.py).
    """
    b = t.blobs
    with store.write() as conn:
        store.lock_digest(conn, digest)
        if backup_lease.held(store, conn):  # a backup's snapshot may list it: keep it
            return False
        if conn.execute(
            sa.select(b.c.digest).where(
                b.c.digest == digest, *_unreferenced(b, cutoff, keep_since=keep_since))
        ).first() is None:
            return False
        quota_accounting.drop_all_links(store, conn, digest)
        conn.execute(t.repository_blobs.delete().where(t.repository_blobs.c.digest == digest))
        conn.execute(b.delete().where(b.c.digest == digest))
        return True


def remove_unrecorded_bytes(
    store: MetadataStore, digest: str, remove: Callable[[str], None]
) -> bool:
    """Remove a blob's bytes unless a row records them; False when one does.

    Under the digest's lock, which an upload holds while it publishes the same
    digest: an upload that recorded the blob meanwhile keeps its bytes, one
    that comes after finds them gone and puts its own in place. The
    transaction writes nothing, so a failed commit leaves nothing half done.
    """
    with store.write() as conn:
        store.lock_digest(conn, digest)
        if store.blob_size(conn, digest) is not None:
            return False
        remove(digest)
        return True


def settle_candidates(store: MetadataStore) -> tuple[int, int]:
    """Forget the candidates that are gone or kept alive by something whose removal
    records them again (a tag, an index, a subject; a manifest's reference); those
    kept only for a while (the grace period, tag history) stay for a later run.

    One statement per table, so a candidate recorded by a transaction this one does
    not see is never forgotten. The numbers of manifest and blob rows forgotten.
    """
    c, m, tg = t.gc_manifest_candidates, t.manifests, t.tags
    parent, subject = t.manifest_children, t.manifests.alias("live_subject")
    kept = sa.exists().where(m.c.id == c.c.manifest_id, sa.or_(
        sa.exists().where(tg.c.manifest_id == m.c.id),
        sa.exists().where(parent.c.repository_id == m.c.repository_id,
                          parent.c.child_digest == m.c.digest),
        sa.exists().where(subject.c.repository_id == m.c.repository_id,
                          subject.c.digest == m.c.subject),
    ))
    gone = ~sa.exists().where(m.c.id == c.c.manifest_id)
    bc, b, mb = t.gc_blob_candidates, t.blobs, t.manifest_blobs
    referenced = sa.exists().where(mb.c.digest == bc.c.digest)
    with store.write() as conn:
        manifests = conn.execute(c.delete().where(sa.or_(gone, kept))).rowcount
        blobs = conn.execute(bc.delete().where(sa.or_(
            ~sa.exists().where(b.c.digest == bc.c.digest), referenced))).rowcount
    return manifests, blobs


def known_blobs(store: MetadataStore) -> set[str]:
    with store.read() as conn:
        return set(conn.execute(sa.select(t.blobs.c.digest)).scalars())


def record_run(store: MetadataStore, started: float, dry_run: bool, stats: dict[str, int]) -> None:
    with store.write() as conn:
        conn.execute(
            t.gc_runs.insert().values(
                started_at=started, finished_at=time.time(), dry_run=dry_run, **stats
            )
        )
        store.events.emit(conn, "gc.finished", **stats)


def last_finished_run(store: MetadataStore) -> float | None:
    """When the last real (not dry) GC run finished."""
    query = sa.select(sa.func.max(t.gc_runs.c.finished_at)).where(t.gc_runs.c.dry_run.is_(False))
    with store.read() as conn:
        return conn.execute(query).scalar()


def run_history(store: MetadataStore, limit: int, before_id: int | None = None) -> list[dict]:
    """Finished runs, newest first, from ``before_id`` (exclusive; a keyset page)."""
    g = t.gc_runs
    query = sa.select(
        g.c.id, g.c.started_at, g.c.finished_at, g.c.dry_run, g.c.manifests_deleted,
        g.c.blobs_deleted, g.c.bytes_freed, g.c.uploads_expired,
    ).order_by(g.c.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(g.c.id < before_id)
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
