"""SQL of the mirror's space and management: each upstream's cached content (the
snapshot eviction plans on, its usage, its repositories and tags) and prefetch runs.

An upstream's content is every repository named ``<upstream>/...``: selected by a
name range (``>= 'up/'`` and ``< 'up0'``, '0' being the byte after '/'), which the
unique index on repositories.name answers on both databases (byte order: SQLite's
default, the C collation on PostgreSQL).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


def under(column: Any, upstream: str) -> Any:
    """``column`` (a repository name) is in the upstream's prefix."""
    return sa.and_(column >= upstream + "/", column < upstream + "0")


def _ids(column: Any, ids: Sequence[int]) -> Any:
    return column.in_(sa.bindparam(None, list(ids), expanding=True, literal_execute=True))


# -- the snapshot eviction plans on --------------------------------------------------
def snapshot_rows(store: MetadataStore, upstream: str) -> dict[str, list]:
    """Raw rows of the upstream's content: tags, manifests, children, manifest blobs and
    blob sizes. One read transaction: a consistent view."""
    r, tg, tp, m, mp = t.repositories, t.tags, t.tag_pulls, t.manifests, t.manifest_pulls
    mc, mb, b = t.manifest_children, t.manifest_blobs, t.blobs
    repos = sa.select(r.c.id).where(under(r.c.name, upstream)).scalar_subquery()
    out: dict[str, list] = {}
    with store.read() as conn:
        out["tags"] = conn.execute(
            sa.select(r.c.name, tg.c.name, tg.c.manifest_id, tg.c.updated_at,
                      tp.c.last_pulled_at)
            .select_from(tg.join(r, r.c.id == tg.c.repository_id)
                         .outerjoin(tp, sa.and_(tp.c.repository_id == tg.c.repository_id,
                                                tp.c.name == tg.c.name)))
            .where(under(r.c.name, upstream))).all()
        out["manifests"] = conn.execute(
            sa.select(m.c.id, r.c.name, m.c.digest, m.c.size, m.c.created_at,
                      mp.c.last_pulled_at, m.c.subject)
            .select_from(m.join(r, r.c.id == m.c.repository_id)
                         .outerjoin(mp, mp.c.manifest_id == m.c.id))
            .where(under(r.c.name, upstream))).all()
        out["children"] = conn.execute(
            sa.select(mc.c.manifest_id, mc.c.child_digest)
            .where(mc.c.repository_id.in_(repos))).all()
        out["blobs"] = conn.execute(
            sa.select(mb.c.manifest_id, mb.c.digest)
            .select_from(mb.join(m, m.c.id == mb.c.manifest_id))
            .where(m.c.repository_id.in_(repos))).all()
        out["sizes"] = conn.execute(
            sa.select(b.c.digest, b.c.size).where(b.c.digest.in_(
                sa.select(mb.c.digest).select_from(mb.join(m, m.c.id == mb.c.manifest_id))
                .where(m.c.repository_id.in_(repos))))).all()
    return out


def forget_reference(conn: Connection, repository: str, reference: str) -> None:
    """Inside an eviction's write transaction: the freshness row of what went, so that
    the next pull asks upstream instead of trusting a check of content no longer here."""
    c = t.mirror_tags.c
    conn.execute(t.mirror_tags.delete().where(c.repository == repository,
                                              c.reference == reference))


# -- usage and listings (management API, UI) ------------------------------------------
def usage(store: MetadataStore, upstream: str) -> dict[str, int]:
    """Repositories, tags, manifests and bytes (distinct blobs plus manifests) cached."""
    r, tg, m, mb, b = t.repositories, t.tags, t.manifests, t.manifest_blobs, t.blobs
    repos = sa.select(r.c.id).where(under(r.c.name, upstream)).scalar_subquery()
    with store.read() as conn:
        repositories = conn.execute(sa.select(sa.func.count()).select_from(r)
                                    .where(under(r.c.name, upstream))).scalar() or 0
        tags = conn.execute(sa.select(sa.func.count()).select_from(tg)
                            .where(tg.c.repository_id.in_(repos))).scalar() or 0
        manifests, manifest_bytes = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(m.c.size), 0))
            .where(m.c.repository_id.in_(repos))).one()
        blob_bytes = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(b.c.size), 0)).where(b.c.digest.in_(
                sa.select(mb.c.digest).select_from(mb.join(m, m.c.id == mb.c.manifest_id))
                .where(m.c.repository_id.in_(repos))))).scalar() or 0
    return {"repositories": int(repositories), "tags": int(tags),
            "manifests": int(manifests), "bytes": int(blob_bytes) + int(manifest_bytes)}


def cached_repositories(store: MetadataStore, upstream: str, limit: int,
                        after: str | None = None) -> list[dict[str, Any]]:
    """The upstream's repositories by name (keyset after ``after``): tags, size, last
    pull, last check upstream."""
    r, tg, tp, rs, mt = (t.repositories, t.tags, t.tag_pulls, t.repository_stats,
                         t.mirror_tags)
    tags = (sa.select(sa.func.count()).where(tg.c.repository_id == r.c.id)
            .scalar_subquery())
    pulled = (sa.select(sa.func.max(tp.c.last_pulled_at))
              .where(tp.c.repository_id == r.c.id).scalar_subquery())
    checked = (sa.select(sa.func.max(mt.c.checked_at))
               .where(mt.c.repository == r.c.name).scalar_subquery())
    query = (sa.select(r.c.name, tags.label("tags"), rs.c.size, pulled.label("pulled"),
                       checked.label("checked"))
             .select_from(r.outerjoin(rs, rs.c.repository_id == r.c.id))
             .where(under(r.c.name, upstream)).order_by(r.c.name).limit(limit))
    if after is not None:
        query = query.where(r.c.name > after)
    with store.read() as conn:
        return [{"name": row.name, "tags": int(row.tags), "size": int(row.size or 0),
                 "last_pulled_at": row.pulled, "last_checked_at": row.checked}
                for row in conn.execute(query)]


def repository_tags(store: MetadataStore, repository: str,
                    limit: int) -> list[dict[str, Any]] | None:
    """Tags of a local repository with digest, fill time and last pull (None: no such
    repository); the caller joins them with the freshness rows."""
    r, tg, tp, m = t.repositories, t.tags, t.tag_pulls, t.manifests
    with store.read() as conn:
        rid = conn.execute(sa.select(r.c.id).where(r.c.name == repository)).scalar()
        if rid is None:
            return None
        rows = conn.execute(
            sa.select(tg.c.name, m.c.digest, tg.c.updated_at, tp.c.last_pulled_at)
            .select_from(tg.join(m, m.c.id == tg.c.manifest_id)
                         .outerjoin(tp, sa.and_(tp.c.repository_id == tg.c.repository_id,
                                                tp.c.name == tg.c.name)))
            .where(tg.c.repository_id == rid).order_by(tg.c.name).limit(limit)).all()
    return [{"name": row[0], "digest": row[1], "cached_at": row[2], "last_pulled_at": row[3]}
            for row in rows]


# -- prefetch runs -------------------------------------------------------------------
RUN_COLUMNS = ("id", "upstream", "dry_run", "trigger", "started_by", "status", "started_at",
               "updated_at", "finished_at", "tags_total", "tags_done", "tags_failed",
               "bytes", "error", "problems")


def start_sync_run(store: MetadataStore, upstream: str, dry_run: bool, trigger: str,
                   started_by: str) -> int:
    now = time.time()
    with store.write() as conn:
        return int(conn.execute(t.mirror_sync_runs.insert().values(
            upstream=upstream, dry_run=dry_run, trigger=trigger, started_by=started_by[:255],
            status="running", started_at=now, updated_at=now, tags_total=0, tags_done=0,
            tags_failed=0, bytes=0, problems="[]")).inserted_primary_key[0])


def update_sync_run(store: MetadataStore, run_id: int, **values: Any) -> None:
    """Progress (tags_total, tags_done, tags_failed, bytes, problems) or the end (status,
    finished_at, error)."""
    if "problems" in values:
        values["problems"] = json.dumps(values["problems"][-50:])
    if isinstance(values.get("error"), str):
        values["error"] = values["error"][:2000]
    values["updated_at"] = time.time()
    with store.write() as conn:
        conn.execute(t.mirror_sync_runs.update()
                     .where(t.mirror_sync_runs.c.id == run_id).values(**values))


def _run_dict(row: Any) -> dict[str, Any]:
    out = dict(zip(RUN_COLUMNS, row, strict=True))
    out["problems"] = json.loads(out["problems"] or "[]")
    return out


def sync_runs(store: MetadataStore, upstream: str | None, limit: int) -> list[dict[str, Any]]:
    s = t.mirror_sync_runs
    query = sa.select(*(s.c[c] for c in RUN_COLUMNS)).order_by(s.c.id.desc()).limit(limit)
    if upstream is not None:
        query = query.where(s.c.upstream == upstream)
    with store.read() as conn:
        return [_run_dict(row) for row in conn.execute(query)]


def sync_run(store: MetadataStore, run_id: int) -> dict[str, Any] | None:
    s = t.mirror_sync_runs
    with store.read() as conn:
        row = conn.execute(sa.select(*(s.c[c] for c in RUN_COLUMNS))
                           .where(s.c.id == run_id)).first()
    return _run_dict(row) if row else None


def last_sync_started(store: MetadataStore, upstream: str) -> float | None:
    """When the last real prefetch run of the upstream started (the schedule's memory)."""
    s = t.mirror_sync_runs
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.max(s.c.started_at)).where(
            s.c.upstream == upstream, s.c.dry_run.is_(False))).scalar()
