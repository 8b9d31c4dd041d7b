"""Keyset-paged listings and search for the management API (one statement per page).

Pages continue after a key (the sort value and the name that breaks ties),
never at an offset: the first and the last page of a 100,000-tag repository
cost the same. Name sorts walk an index (tags: primary key; repositories: the
unique name); other sorts order on the computed figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.browse_queries import (
    RepositorySummary,
    TagRow,
    _in,
    _repo_filters,
    _summary,
    _summary_columns,
    like_pattern,
)
from ociregistry.metadata.store import MetadataStore


@dataclass
class Keyset:
    """Where a page starts: after (or, going back, before) ``key``/``name``."""

    key: Any = None
    name: str | None = None
    backwards: bool = False


@dataclass
class NamespaceUsage:
    repositories: int
    tags: int
    manifests: int
    size: int  # distinct blobs referenced by any repository of the namespace


@dataclass
class SearchHit:
    kind: str  # "repository", "tag", "annotation"
    repository: str
    tag: str | None = None
    digest: str | None = None
    annotations: str | None = None  # the manifest's annotations (JSON text)


@dataclass
class NameScope:
    """Repository names a caller may see, as the database can test them: these names
    exactly, or any name starting with one of the prefixes ("" starts every name)."""

    exact: list[str]
    prefixes: list[str]


def scope_condition(column: Any, scope: NameScope) -> Any:
    """Byte-wise (never LIKE, which SQLite folds for ASCII case) and index-friendly."""
    terms: list[Any] = []
    if scope.exact:
        terms.append(_in(column, scope.exact))
    for prefix in scope.prefixes:
        if not prefix:
            return sa.true()
        # Every string starting with the prefix sorts in [prefix, prefix with its last
        # character incremented).
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        terms.append(sa.and_(column >= prefix, column < upper))
    return sa.or_(*terms) if terms else sa.false()


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def glob_pattern(glob: str) -> str:
    """A LIKE pattern (escape ``\\``) for a glob: ``*`` any run, ``?`` one character."""
    return "".join("%" if c == "*" else "_" if c == "?" else escape_like(c) for c in glob)


def _after(key_col: Any, name_col: Any, keyset: Keyset, descending: bool) -> Any:
    """Rows strictly after the keyset in the walking direction (ties broken by name asc)."""
    forward = descending == keyset.backwards  # comparing the key upwards
    name_cmp = name_col < keyset.name if keyset.backwards else name_col > keyset.name
    if key_col is None:
        return name_cmp
    key_cmp = key_col > keyset.key if forward else key_col < keyset.key
    return sa.or_(key_cmp, sa.and_(key_col == keyset.key, name_cmp))


def _ordering(key_col: Any, name_col: Any, descending: bool, backwards: bool) -> list[Any]:
    up = descending == backwards
    name_order = name_col.desc() if backwards else name_col.asc()
    if key_col is None:
        return [name_order]
    return [key_col.asc() if up else key_col.desc(), name_order]


def _by_name(name_col: Any, keyset: Keyset | None, descending: bool) -> tuple[list[Any], Any]:
    """Ordering and start condition when the name alone is the key."""
    up = descending == (keyset is not None and keyset.backwards)
    after = None
    if keyset is not None:
        after = name_col > keyset.name if up else name_col < keyset.name
    return [name_col.asc() if up else name_col.desc()], after


def repositories_after(
    store: MetadataStore, *, contains: str = "", glob: str = "", sort: str = "name",
    descending: bool = False, keyset: Keyset | None = None, limit: int = 100,
    names: Sequence[str] | None = None, scope: NameScope | None = None,
) -> list[RepositorySummary]:
    """Up to ``limit`` repositories (with a manifest) from ``keyset`` on, in page order.

    Only the sort key is computed for every matching repository; the other
    figures (counts, deduplicated size) only for the rows of the page.
    """
    r = t.repositories
    _, keys = _summary_columns()
    conditions = _repo_filters(contains, names)
    if scope is not None:
        conditions.append(scope_condition(r.c.name, scope))
    if glob:
        conditions.append(r.c.name.like(glob_pattern(glob), escape="\\"))
    key_expr = None if sort == "name" else keys["pushed"]
    if sort == "size":  # the maintained figure (repository_stats), not a computation
        rs = t.repository_stats
        key_expr = sa.func.coalesce(
            sa.select(rs.c.size).where(rs.c.repository_id == r.c.id).scalar_subquery(), 0)
    keyed = [r.c.id, r.c.name] + ([] if key_expr is None else [key_expr.label("key")])
    inner = sa.select(*keyed).where(*conditions).subquery("repos")
    backwards = keyset is not None and keyset.backwards

    def order(source: Any) -> tuple[list[Any], Any]:
        if key_expr is None:  # the name is the key
            return _by_name(source.c.name, keyset, descending)
        ordering = _ordering(source.c.key, source.c.name, descending, backwards)
        return ordering, (_after(source.c.key, source.c.name, keyset, descending)
                          if keyset is not None else None)

    ordering, after = order(inner)
    page_query = sa.select(inner)
    if after is not None:
        page_query = page_query.where(after)
    page = page_query.order_by(*ordering).limit(limit).subquery("page")
    columns, _ = _summary_columns(page)
    if sort == "size":  # the figure the page was sorted and its cursor keyed on
        columns = [page.c.key.label("size") if c.name == "size" else c for c in columns]
    query = sa.select(*columns).order_by(*order(page)[0])
    with store.read() as conn:
        rows = [_summary(row) for row in conn.execute(query)]
    return rows[::-1] if backwards else rows


def recompute_repository_sizes(store: MetadataStore) -> None:
    """Rebuild repository_stats from the references (after a bulk load; as migration 0008)."""
    r, rs = t.repositories, t.repository_stats
    columns, _ = _summary_columns()
    size = next(c for c in columns if c.name == "size")
    with store.write() as conn:
        conn.execute(rs.delete())
        conn.execute(rs.insert().from_select(["repository_id", "size"],
                                             sa.select(r.c.id, sa.func.coalesce(size, 0))))


def tags_after(
    store: MetadataStore, repository: str, *, exact: str = "", prefix: str = "",
    glob: str = "", contains: str = "", sort: str = "name", descending: bool = False,
    keyset: Keyset | None = None, limit: int = 100,
) -> list[TagRow] | None:
    """Up to ``limit`` tags from ``keyset`` on; None when there is no such repository."""
    tg, m, tp = t.tags, t.manifests, t.tag_pulls
    with store.read() as conn:
        repo_id = store.repository_id(conn, repository)
        if repo_id is None:
            return None
        conditions: list[Any] = [tg.c.repository_id == repo_id]
        if exact:
            conditions.append(tg.c.name == exact)
        if prefix:
            conditions.append(tg.c.name.like(escape_like(prefix) + "%", escape="\\"))
        if glob:
            conditions.append(tg.c.name.like(glob_pattern(glob), escape="\\"))
        if contains:  # within one repository's tags (the index narrows it first)
            conditions.append(tg.c.name.like(like_pattern(contains), escape="\\"))
        backwards = keyset is not None and keyset.backwards
        if sort == "name":
            ordering, after = _by_name(tg.c.name, keyset, descending)
        else:  # pushed, or pulled (never pulled sorts as 0)
            key = tg.c.updated_at if sort == "pushed" else sa.func.coalesce(
                tp.c.last_pulled_at, 0.0)
            ordering = _ordering(key, tg.c.name, descending, backwards)
            after = _after(key, tg.c.name, keyset, descending) if keyset is not None else None
        if after is not None:
            conditions.append(after)
        query = (
            sa.select(tg.c.name, tg.c.updated_at, m.c.id, m.c.digest, m.c.media_type, m.c.size,
                      m.c.payload, m.c.created_at, tp.c.last_pulled_at,
                      sa.func.coalesce(tp.c.count, 0))
            .select_from(tg.join(m, m.c.id == tg.c.manifest_id).outerjoin(
                tp, sa.and_(tp.c.repository_id == tg.c.repository_id, tp.c.name == tg.c.name)))
            .where(*conditions)
            .order_by(*ordering)
            .limit(limit)
        )
        rows = [TagRow(*row) for row in conn.execute(query)]
    return rows[::-1] if backwards else rows


def count_repositories(store: MetadataStore, contains: str = "",
                       names: Sequence[str] | None = None,
                       scope: NameScope | None = None) -> int:
    """How many repositories (with a manifest) a listing with these filters holds."""
    r = t.repositories
    conditions = _repo_filters(contains, names)
    if scope is not None:
        conditions.append(scope_condition(r.c.name, scope))
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(r)
                                .where(*conditions)).scalar() or 0)


def count_tags(store: MetadataStore, repository: str, contains: str = "") -> int:
    tg, r = t.tags, t.repositories
    conditions: list[Any] = [r.c.name == repository]
    if contains:
        conditions.append(tg.c.name.like(like_pattern(contains), escape="\\"))
    query = (sa.select(sa.func.count()).select_from(tg.join(r, r.c.id == tg.c.repository_id))
             .where(*conditions))
    with store.read() as conn:
        return int(conn.execute(query).scalar() or 0)


def _namespace_condition(prefix: str) -> Any:
    r = t.repositories
    return sa.or_(r.c.name == prefix, r.c.name.like(escape_like(prefix) + "/%", escape="\\"))


def namespace_usage(store: MetadataStore, prefix: str,
                    names: Sequence[str] | None = None,
                    scope: NameScope | None = None) -> NamespaceUsage:
    """Counts and the deduplicated size of every repository named ``prefix`` or under it."""
    r, m, tg, mb, b = (t.repositories, t.manifests, t.tags, t.manifest_blobs, t.blobs)
    repo_filter = [_namespace_condition(prefix)]
    if names is not None:
        repo_filter.append(_in(r.c.name, names))
    if scope is not None:
        repo_filter.append(scope_condition(r.c.name, scope))
    repo_ids = sa.select(r.c.id).where(*repo_filter)
    digests = (sa.select(mb.c.digest).select_from(mb.join(m, m.c.id == mb.c.manifest_id))
               .where(m.c.repository_id.in_(repo_ids)))
    query = sa.select(
        sa.select(sa.func.count()).select_from(r).where(
            *repo_filter, sa.exists().where(m.c.repository_id == r.c.id)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(tg)
        .where(tg.c.repository_id.in_(repo_ids)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(m)
        .where(m.c.repository_id.in_(repo_ids)).scalar_subquery(),
        sa.select(sa.func.coalesce(sa.func.sum(b.c.size), 0))
        .where(b.c.digest.in_(digests)).scalar_subquery(),
    )
    with store.read() as conn:
        row = conn.execute(query).one()
    return NamespaceUsage(*(int(v or 0) for v in row))


def search(store: MetadataStore, text: str, limit: int,
           names: Sequence[str] | None = None,
           scope: NameScope | None = None) -> list[SearchHit]:
    """Repositories and tags containing ``text``; manifests with an annotation whose key
    is ``text`` or whose value starts with it (each kind up to ``limit``)."""
    if not text:
        return []
    r, tg, m = t.repositories, t.tags, t.manifests
    pattern = like_pattern(text)
    visible: list[Any] = [] if names is None else [_in(r.c.name, names)]
    if scope is not None:
        visible.append(scope_condition(r.c.name, scope))
    repos = (sa.select(r.c.name).where(*_repo_filters(text, None), *visible)
             .order_by(r.c.name).limit(limit))
    tags = (sa.select(r.c.name, tg.c.name).select_from(tg.join(r, r.c.id == tg.c.repository_id))
            .where(tg.c.name.like(pattern, escape="\\"), *visible)
            .order_by(r.c.name, tg.c.name).limit(limit))
    # Annotations: the key exactly, or the value by prefix, from their indexes.
    a = t.manifest_annotations
    matching = sa.select(a.c.manifest_id).where(sa.or_(
        a.c.key == text, scope_condition(a.c.value, NameScope([], [text]))))
    annotated = (sa.select(r.c.name, m.c.digest, m.c.annotations)
                 .select_from(m.join(r, r.c.id == m.c.repository_id))
                 .where(m.c.id.in_(matching), *visible)
                 .order_by(r.c.name, m.c.digest).limit(limit))
    with store.read() as conn:
        hits = [SearchHit("repository", name) for name in conn.execute(repos).scalars()]
        hits += [SearchHit("tag", repo, tag=tag) for repo, tag in conn.execute(tags)]
        hits += [SearchHit("annotation", repo, digest=digest, annotations=ann)
                 for repo, digest, ann in conn.execute(annotated)]
    return hits
