"""Queries of quotas: the quota rows, which repositories they cover, and usage
computed from scratch (a walk: on creation, on recount, and for ``du``).

The incremental figures are kept by metadata/quota_accounting.py; the walk here
is the reference they must always equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.auth.rules import glob_match
from ociregistry.metadata import quota_accounting as acc
from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import once

Matcher = Callable[[str, str], bool]  # (pattern, repository name) -> covered


@dataclass
class QuotaRow:
    id: int
    pattern: str
    limit_bytes: int
    warning_bytes: int | None
    blob_bytes: int
    upload_bytes: int
    source: str
    created_at: float
    updated_at: float

    @property
    def usage(self) -> int:
        return self.blob_bytes + self.upload_bytes


_COLUMNS = tuple(getattr(t.quotas.c, f) for f in QuotaRow.__dataclass_fields__)


def list_quotas(store: Any) -> list[QuotaRow]:
    with store.read() as conn:
        # Every blob push's precheck reads them: compiled once (prepared.once).
        rows = once(conn, "quota.list", lambda: sa.select(*_COLUMNS).order_by(
            t.quotas.c.pattern)).rows(conn).all()
    return [QuotaRow(*row) for row in rows]


def get_quota(store: Any, quota_id: int) -> QuotaRow | None:
    with store.read() as conn:
        row = conn.execute(sa.select(*_COLUMNS).where(t.quotas.c.id == quota_id)).first()
    return QuotaRow(*row) if row else None


def quota_by_pattern(conn: Connection, pattern: str) -> int | None:
    return conn.execute(sa.select(t.quotas.c.id).where(t.quotas.c.pattern == pattern)).scalar()


def map_new_repository(store: Any, conn: Connection, repo_id: int, name: str,
                       matches: Matcher = glob_match) -> None:
    """A repository was just created: record which quotas cover it."""
    acc.lock(store, conn)
    patterns = once(conn, "quota.patterns", lambda: sa.select(t.quotas.c.id, t.quotas.c.pattern))
    found = [qid for qid, pattern in patterns.rows(conn) if matches(pattern, name)]
    if found:
        conn.execute(t.quota_repositories.insert(),
                     [{"quota_id": qid, "repository_id": repo_id} for qid in sorted(found)])


def _repository_ids(conn: Connection, pattern: str, matches: Matcher) -> list[int]:
    r = t.repositories
    rows = conn.execute(sa.select(r.c.id, r.c.name))
    return [rid for rid, name in rows if matches(pattern, name)]


def _references(repo_ids: sa.Select) -> sa.Subquery:
    """(digest, size): one row per link, manifest reference and manifest in the
    repositories."""
    rb, mb, m, b = t.repository_blobs, t.manifest_blobs, t.manifests, t.blobs
    links = (sa.select(rb.c.digest, b.c.size).select_from(rb.join(b, b.c.digest == rb.c.digest))
             .where(rb.c.repository_id.in_(repo_ids)))
    refs = (sa.select(mb.c.digest, b.c.size)
            .select_from(mb.join(m, m.c.id == mb.c.manifest_id)
                         .join(b, b.c.digest == mb.c.digest))
            .where(m.c.repository_id.in_(repo_ids)))
    manifests = sa.select(m.c.digest, sa.cast(m.c.size, sa.BigInteger)).where(
        m.c.repository_id.in_(repo_ids))
    return sa.union_all(links, refs, manifests).subquery("refs")


def _walk_counts(repo_ids: sa.Select) -> sa.Select:
    """(digest, size, refs) of everything the repositories hold."""
    refs = _references(repo_ids)
    return (sa.select(refs.c.digest, refs.c.size, sa.func.count().label("refs"))
            .group_by(refs.c.digest, refs.c.size))


def walk_usage(conn: Connection, repo_ids: sa.Select) -> tuple[int, int]:
    """(blob bytes, upload bytes) of the repositories, computed from scratch."""
    counts = _walk_counts(repo_ids).subquery("counts")
    blob_bytes = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(counts.c.size), 0))).scalar()
    upload_bytes = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(t.uploads.c.size), 0))
        .where(t.uploads.c.repository_id.in_(repo_ids))
    ).scalar()
    return int(blob_bytes or 0), int(upload_bytes or 0)


def _covered(quota_id: int) -> sa.Select:
    qr = t.quota_repositories
    return sa.select(qr.c.repository_id).where(qr.c.quota_id == quota_id)


def _count_from_scratch(conn: Connection, quota_id: int) -> None:
    """Rebuild the quota's blob counts and usage (the "quotas" lock held exclusively)."""
    qb = t.quota_blobs
    conn.execute(qb.delete().where(qb.c.quota_id == quota_id))
    counts = _walk_counts(_covered(quota_id)).subquery("counts")
    conn.execute(qb.insert().from_select(
        ["quota_id", "digest", "size", "refs"],
        sa.select(sa.literal(quota_id), counts.c.digest, counts.c.size, counts.c.refs)))
    blob_bytes, upload_bytes = walk_usage(conn, _covered(quota_id))
    conn.execute(t.quotas.update().where(t.quotas.c.id == quota_id)
                 .values(blob_bytes=blob_bytes, upload_bytes=upload_bytes))


def create_quota(store: Any, pattern: str, limit: int, warning: int | None, source: str,
                 matches: Matcher = glob_match) -> int | None:
    """A new quota with its usage counted once; None when the pattern has one already."""
    now = time.time()
    with store.write() as conn:
        acc.lock(store, conn, exclusive=True)
        if quota_by_pattern(conn, pattern) is not None:
            return None
        quota_id = conn.execute(t.quotas.insert().values(
            pattern=pattern, limit_bytes=limit, warning_bytes=warning, blob_bytes=0,
            upload_bytes=0, source=source, created_at=now, updated_at=now,
        )).inserted_primary_key[0]
        repo_ids = _repository_ids(conn, pattern, matches)
        if repo_ids:
            conn.execute(t.quota_repositories.insert(),
                         [{"quota_id": quota_id, "repository_id": rid} for rid in repo_ids])
        _count_from_scratch(conn, quota_id)
        return int(quota_id)


def update_quota(store: Any, quota_id: int, values: dict[str, Any]) -> bool:
    """Change limit_bytes / warning_bytes / source; False when there is no such quota."""
    with store.write() as conn:
        q = t.quotas
        result = conn.execute(q.update().where(q.c.id == quota_id)
                              .values(**values, updated_at=time.time()))
        return result.rowcount > 0


def delete_quota(store: Any, quota_id: int) -> bool:
    with store.write() as conn:
        acc.lock(store, conn, exclusive=True)  # no push is between its count and its row
        for table in (t.quota_blobs, t.quota_repositories):
            conn.execute(table.delete().where(table.c.quota_id == quota_id))
        return conn.execute(t.quotas.delete().where(t.quotas.c.id == quota_id)).rowcount > 0


def recount(store: Any, quota_id: int) -> tuple[int, int] | None:
    """Count the quota's usage from scratch again: (before, after), or None."""
    with store.write() as conn:
        acc.lock(store, conn, exclusive=True)
        q = t.quotas
        before = conn.execute(sa.select(q.c.blob_bytes + q.c.upload_bytes)
                              .where(q.c.id == quota_id)).scalar()
        if before is None:
            return None
        _count_from_scratch(conn, quota_id)
        after = conn.execute(sa.select(q.c.blob_bytes + q.c.upload_bytes)
                             .where(q.c.id == quota_id)).scalar()
        return int(before), int(after)


def namespace_walks(store: Any, patterns: Iterable[str],
                    matches: Matcher = glob_match) -> dict[str, tuple]:
    """Pattern -> (repositories, blob bytes, upload bytes), computed from scratch."""
    out: dict[str, tuple] = {}
    with store.read() as conn:
        for pattern in patterns:
            ids = _repository_ids(conn, pattern, matches)
            chosen = sa.select(t.repositories.c.id).where(
                t.repositories.c.id.in_(sa.bindparam(None, ids or [-1], expanding=True)))
            out[pattern] = (len(ids), *walk_usage(conn, chosen))
    return out


def usage_of_repository(store: Any, name: str) -> list[tuple[str, int, int]]:
    """(pattern, usage, limit) of every quota covering the repository ``name``."""
    q, qr, r = t.quotas, t.quota_repositories, t.repositories
    query = (sa.select(q.c.pattern, q.c.blob_bytes + q.c.upload_bytes, q.c.limit_bytes)
             .select_from(q.join(qr, qr.c.quota_id == q.c.id)
                          .join(r, r.c.id == qr.c.repository_id))
             .where(r.c.name == name))
    with store.read() as conn:
        return [tuple(row) for row in conn.execute(query)]


def holds(store: Any, quota_id: int, digest: str) -> bool:
    """True when the quota's namespace holds ``digest`` already (it would add nothing)."""
    qb = t.quota_blobs
    with store.read() as conn:
        return conn.execute(sa.select(qb.c.refs).where(
            qb.c.quota_id == quota_id, qb.c.digest == digest)).first() is not None
