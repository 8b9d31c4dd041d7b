"""Pull statistics: batched upserts (count += n, last = max) and reads for listings.

A flush writes many keys in one transaction, in key order (two workers flushing
the same keys on PostgreSQL lock their rows in the same order: no deadlock).
Only tags and manifests that exist get a row: the INSERT selects them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore

_LATER = "CASE WHEN excluded.last_pulled_at > {t}.last_pulled_at" \
         " THEN excluded.last_pulled_at ELSE {t}.last_pulled_at END"

TAG_UPSERT = sa.text(
    "INSERT INTO tag_pulls (repository_id, name, count, last_pulled_at)"
    " SELECT tg.repository_id, tg.name, :n, :at FROM tags tg"
    " JOIN repositories r ON r.id = tg.repository_id WHERE r.name = :repo AND tg.name = :tag"
    " ON CONFLICT (repository_id, name) DO UPDATE SET count = tag_pulls.count + excluded.count,"
    " last_pulled_at = " + _LATER.format(t="tag_pulls")
)
MANIFEST_UPSERT = sa.text(
    "INSERT INTO manifest_pulls (manifest_id, count, last_pulled_at)"
    " SELECT m.id, :n, :at FROM manifests m"
    " JOIN repositories r ON r.id = m.repository_id WHERE r.name = :repo AND m.digest = :digest"
    " ON CONFLICT (manifest_id) DO UPDATE SET count = manifest_pulls.count + excluded.count,"
    " last_pulled_at = " + _LATER.format(t="manifest_pulls")
)

Counts = dict[tuple[str, str], tuple[int, float]]  # (repository, tag or digest) -> (n, last)


def _params(counts: Counts, key: str) -> list[dict]:
    return [{"repo": repo, key: ref, "n": n, "at": at}
            for (repo, ref), (n, at) in sorted(counts.items())]


def flush(store: MetadataStore, tags: Counts, manifests: Counts) -> None:
    """Add a buffer's counts in one transaction."""
    with store.write() as conn:
        if tags:
            conn.execute(TAG_UPSERT, _params(tags, "tag"))
        if manifests:
            conn.execute(MANIFEST_UPSERT, _params(manifests, "digest"))


def tag_pulls(store: MetadataStore, repo_id: int,
              names: Sequence[str]) -> dict[str, tuple[int, float]]:
    """Tag name -> (count, last pulled) for those of ``names`` ever pulled."""
    if not names:
        return {}
    tp = t.tag_pulls
    query = sa.select(tp.c.name, tp.c.count, tp.c.last_pulled_at).where(
        tp.c.repository_id == repo_id, tp.c.name.in_(list(names)))
    with store.read() as conn:
        return {name: (int(count), at) for name, count, at in conn.execute(query)}


def manifest_pulls(store: MetadataStore,
                   ids: Iterable[int]) -> dict[int, tuple[int, float]]:
    """Manifest id -> (count, last pulled) for those of ``ids`` ever pulled."""
    ids = list(ids)
    if not ids:
        return {}
    mp = t.manifest_pulls
    query = sa.select(mp.c.manifest_id, mp.c.count, mp.c.last_pulled_at).where(
        mp.c.manifest_id.in_(ids))
    with store.read() as conn:
        return {mid: (int(count), at) for mid, count, at in conn.execute(query)}


def manifest_pulls_by_digest(store: MetadataStore, repository: str,
                             digest: str) -> tuple[int, float] | None:
    mp, m, r = t.manifest_pulls, t.manifests, t.repositories
    query = (sa.select(mp.c.count, mp.c.last_pulled_at)
             .select_from(mp.join(m, m.c.id == mp.c.manifest_id)
                          .join(r, r.c.id == m.c.repository_id))
             .where(r.c.name == repository, m.c.digest == digest))
    with store.read() as conn:
        row = conn.execute(query).first()
    return (int(row[0]), row[1]) if row else None
