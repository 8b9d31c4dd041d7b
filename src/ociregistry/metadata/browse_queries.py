"""Read-only queries behind the web UI: one statement per page, never one per row.

Per-row figures (sizes, counts, last push) are correlated subqueries that each
use an index, or one grouped query over the ids of the page. The listings
themselves (keyset pages) are in catalog_queries.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore


@dataclass
class RepositorySummary:
    name: str
    tags: int
    manifests: int
    size: int
    last_push: float | None


@dataclass
class TagRow:
    name: str
    pushed_at: float
    manifest_id: int
    digest: str
    media_type: str
    manifest_size: int
    payload: bytes
    created_at: float  # when the manifest first reached the registry
    last_pulled_at: float | None = None  # pull statistics (lifecycle/pull_stats.py)
    pull_count: int = 0


@dataclass
class ManifestRecord:
    id: int
    digest: str
    media_type: str
    size: int
    payload: bytes
    subject: str | None
    artifact_type: str | None
    created_at: float


@dataclass
class ReferrerRow:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str]
    created_at: float


@dataclass
class RecentPush:
    repository: str
    tag: str
    digest: str
    media_type: str
    pushed_at: float


@dataclass
class GCRunRow:
    id: int
    started_at: float
    finished_at: float | None
    dry_run: bool
    manifests_deleted: int
    blobs_deleted: int
    bytes_freed: int
    uploads_expired: int


@dataclass
class Totals:
    repositories: int
    manifests: int
    tags: int
    blobs: int
    storage_bytes: int
    uploads: int


def like_pattern(text: str) -> str:
    """``%text%`` for LIKE, with the wildcards of ``text`` escaped (escape char ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _in(column: sa.ColumnElement, values: Sequence[str]) -> sa.ColumnElement[bool]:
    """``column IN values``, inlined (no bound-parameter limit); false when empty."""
    if not values:
        return sa.false()
    return column.in_(sa.bindparam(None, list(values), expanding=True, literal_execute=True))


class _greatest(FunctionElement):
    """GREATEST(a, b); SQLite spells it max(a, b)."""

    type = sa.Float()
    inherit_cache = True
    name = "greatest"


@compiles(_greatest)
def _greatest_default(element: _greatest, compiler: Any, **kw: Any) -> str:
    return f"greatest({compiler.process(element.clauses, **kw)})"


@compiles(_greatest, "sqlite")
def _greatest_sqlite(element: _greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


# -- repositories --------------------------------------------------------------
def _repo_figures(r: Any) -> dict[str, sa.ScalarSelect]:
    m, tg, mb, b = t.manifests, t.tags, t.manifest_blobs, t.blobs
    referenced = (
        sa.select(mb.c.digest)
        .select_from(mb.join(m, m.c.id == mb.c.manifest_id))
        .where(m.c.repository_id == r.c.id)
        .correlate(r)  # two levels down: auto-correlation would not reach it
    )
    size = sa.select(sa.func.coalesce(sa.func.sum(b.c.size), 0)).where(b.c.digest.in_(referenced))
    last_tag = sa.select(sa.func.max(tg.c.updated_at)).where(tg.c.repository_id == r.c.id)
    last_manifest = sa.select(sa.func.max(m.c.created_at)).where(m.c.repository_id == r.c.id)
    return {
        "tags": sa.select(sa.func.count()).select_from(tg).where(tg.c.repository_id == r.c.id)
        .scalar_subquery(),
        "manifests": sa.select(sa.func.count()).select_from(m).where(m.c.repository_id == r.c.id)
        .scalar_subquery(),
        "size": size.scalar_subquery(),
        "last_tag": last_tag.scalar_subquery(),
        "last_manifest": last_manifest.scalar_subquery(),
    }


def _repo_filters(search: str, names: Sequence[str] | None) -> list[Any]:
    r = t.repositories
    conditions: list[Any] = [sa.exists().where(t.manifests.c.repository_id == r.c.id)]
    if search:
        conditions.append(r.c.name.like(like_pattern(search), escape="\\"))
    if names is not None:
        conditions.append(_in(r.c.name, names))
    return conditions


def repository_names(store: MetadataStore, search: str = "") -> list[str]:
    """Every repository name (with a manifest) matching ``search``: for access filtering."""
    r = t.repositories
    query = sa.select(r.c.name).where(*_repo_filters(search, None)).order_by(r.c.name)
    with store.read() as conn:
        return list(conn.execute(query).scalars())


def _summary_columns(r: Any = None) -> tuple[list[Any], dict[str, Any]]:
    """Figures of each row of ``r`` (the repositories table, or a page of its ids)."""
    r = t.repositories if r is None else r
    figures = _repo_figures(r)
    # Last push: the newer of the last tag update and the last manifest stored.
    last_push = _greatest(
        sa.func.coalesce(figures["last_tag"], 0), sa.func.coalesce(figures["last_manifest"], 0)
    ).label("last_push")
    size = figures["size"].label("size")
    columns = [
        r.c.name, figures["tags"].label("tags"), figures["manifests"].label("manifests"),
        size, last_push,
    ]
    return columns, {"name": r.c.name, "size": size, "pushed": last_push}


def _summary(row: Any) -> RepositorySummary:
    return RepositorySummary(row.name, row.tags, row.manifests, int(row.size or 0),
                             row.last_push)


def repository_summary(store: MetadataStore, name: str) -> RepositorySummary | None:
    columns, _ = _summary_columns()
    query = sa.select(*columns).where(t.repositories.c.name == name)
    with store.read() as conn:
        row = conn.execute(query).first()
    return _summary(row) if row else None


# -- tags ----------------------------------------------------------------------
def content_sizes(store: MetadataStore, manifest_ids: Sequence[int]) -> dict[int, int]:
    """Bytes of the distinct blobs each manifest references, its children's included.

    One grouped query for a whole page of manifests.
    """
    if not manifest_ids:
        return {}
    mb, mc, m, b = t.manifest_blobs, t.manifest_children, t.manifests, t.blobs
    ids = sa.bindparam("ids", list(set(manifest_ids)), expanding=True)
    own = (
        sa.select(mb.c.manifest_id.label("root"), b.c.digest, b.c.size)
        .select_from(mb.join(b, b.c.digest == mb.c.digest))
        .where(mb.c.manifest_id.in_(ids))
    )
    child = m.alias("child")
    child_blobs = mb.alias("child_blobs")
    children = (
        sa.select(mc.c.manifest_id.label("root"), b.c.digest, b.c.size)
        .select_from(
            mc.join(
                child,
                sa.and_(child.c.repository_id == mc.c.repository_id,
                        child.c.digest == mc.c.child_digest),
            )
            .join(child_blobs, child_blobs.c.manifest_id == child.c.id)
            .join(b, b.c.digest == child_blobs.c.digest)
        )
        .where(mc.c.manifest_id.in_(ids))
    )
    every = sa.union(own, children).subquery()
    query = sa.select(every.c.root, sa.func.sum(every.c.size)).group_by(every.c.root)
    with store.read() as conn:
        return {root: int(total or 0) for root, total in conn.execute(query)}


# -- manifests -----------------------------------------------------------------
def manifest_record(store: MetadataStore, repository: str, reference: str,
                    by_digest: bool) -> ManifestRecord | None:
    m, r, tg = t.manifests, t.repositories, t.tags
    source = m.join(r, r.c.id == m.c.repository_id)
    if by_digest:
        condition = m.c.digest == reference
    else:
        source = source.join(tg, tg.c.manifest_id == m.c.id)
        condition = tg.c.name == reference
    query = (
        sa.select(
            m.c.id, m.c.digest, m.c.media_type, m.c.size, m.c.payload, m.c.subject,
            m.c.artifact_type, m.c.created_at,
        )
        .select_from(source)
        .where(r.c.name == repository, condition)
    )
    with store.read() as conn:
        row = conn.execute(query).first()
    return ManifestRecord(*row) if row else None


def tags_of_manifest(store: MetadataStore, manifest_id: int, limit: int = 200) -> list[str]:
    query = (
        sa.select(t.tags.c.name)
        .where(t.tags.c.manifest_id == manifest_id)
        .order_by(t.tags.c.name)
        .limit(limit)
    )
    with store.read() as conn:
        return list(conn.execute(query).scalars())


def present_manifests(store: MetadataStore, repository: str,
                      digests: Sequence[str]) -> dict[str, str]:
    """Which of ``digests`` the repository holds, with their media types."""
    if not digests:
        return {}
    m, r = t.manifests, t.repositories
    query = (
        sa.select(m.c.digest, m.c.media_type)
        .select_from(m.join(r, r.c.id == m.c.repository_id))
        .where(r.c.name == repository,
               m.c.digest.in_(sa.bindparam("d", list(set(digests)), expanding=True)))
    )
    with store.read() as conn:
        return {digest: media_type for digest, media_type in conn.execute(query)}


def blob_sizes(store: MetadataStore, digests: Sequence[str]) -> dict[str, int]:
    if not digests:
        return {}
    b = t.blobs
    query = sa.select(b.c.digest, b.c.size).where(
        b.c.digest.in_(sa.bindparam("d", list(set(digests)), expanding=True))
    )
    with store.read() as conn:
        return {digest: size for digest, size in conn.execute(query)}


def parent_indexes(store: MetadataStore, repository: str, digest: str,
                   limit: int = 50) -> list[str]:
    """Digests of the indexes in the repository that list ``digest`` as a child."""
    mc, m, r = t.manifest_children, t.manifests, t.repositories
    query = (
        sa.select(m.c.digest)
        .select_from(
            mc.join(m, m.c.id == mc.c.manifest_id).join(r, r.c.id == mc.c.repository_id)
        )
        .where(r.c.name == repository, mc.c.child_digest == digest)
        .order_by(m.c.digest)
        .limit(limit)
    )
    with store.read() as conn:
        return list(conn.execute(query).scalars())


def referrers(store: MetadataStore, repository: str, subject: str,
              limit: int = 500) -> list[ReferrerRow]:
    m, r = t.manifests, t.repositories
    query = (
        sa.select(m.c.digest, m.c.media_type, m.c.size, m.c.artifact_type, m.c.annotations,
                  m.c.created_at)
        .select_from(m.join(r, r.c.id == m.c.repository_id))
        .where(r.c.name == repository, m.c.subject == subject)
        .order_by(m.c.artifact_type, m.c.created_at.desc(), m.c.digest)
        .limit(limit)
    )
    with store.read() as conn:
        return [
            ReferrerRow(digest, media_type, size, artifact_type,
                        json.loads(annotations) if annotations else {}, created_at)
            for digest, media_type, size, artifact_type, annotations, created_at
            in conn.execute(query)
        ]


# -- registry overview ---------------------------------------------------------
def totals(store: MetadataStore) -> Totals:
    r = t.repositories

    def count(table: sa.Table) -> sa.ScalarSelect:
        return sa.select(sa.func.count()).select_from(table).scalar_subquery()

    visible_repos = (
        sa.select(sa.func.count()).select_from(r).where(*_repo_filters("", None))
        .scalar_subquery()
    )
    query = sa.select(
        visible_repos,
        count(t.manifests),
        count(t.tags),
        count(t.blobs),
        sa.select(sa.func.coalesce(sa.func.sum(t.blobs.c.size), 0)).scalar_subquery(),
        count(t.uploads),
    )
    with store.read() as conn:
        row = conn.execute(query).one()
    return Totals(*(int(v or 0) for v in row))


def recent_pushes(store: MetadataStore, limit: int = 10) -> list[RecentPush]:
    tg, m, r = t.tags, t.manifests, t.repositories
    query = (
        sa.select(r.c.name, tg.c.name, m.c.digest, m.c.media_type, tg.c.updated_at)
        .select_from(
            tg.join(m, m.c.id == tg.c.manifest_id).join(r, r.c.id == tg.c.repository_id)
        )
        .order_by(tg.c.updated_at.desc())
        .limit(limit)
    )
    with store.read() as conn:
        return [RecentPush(*row) for row in conn.execute(query)]


def gc_runs(store: MetadataStore, limit: int = 10) -> list[GCRunRow]:
    g = t.gc_runs
    query = sa.select(
        g.c.id, g.c.started_at, g.c.finished_at, g.c.dry_run, g.c.manifests_deleted,
        g.c.blobs_deleted, g.c.bytes_freed, g.c.uploads_expired,
    ).order_by(g.c.id.desc()).limit(limit)
    with store.read() as conn:
        return [GCRunRow(*row) for row in conn.execute(query)]


def gc_lock_held(store: MetadataStore) -> bool:
    """True while some process (of any instance) holds the garbage collector's lock."""
    query = sa.select(t.locks.c.expires_at).where(t.locks.c.name == "gc")
    with store.read() as conn:
        expires = conn.execute(query).scalar()
    return expires is not None and expires > time.time()
