"""SQL of tag history and of manifests kept for restores (lifecycle/tag_history.py).

Also the hook the store calls when a tag changes (``TagHook``: a no-op here; the
lifecycle package installs the real one), and the conditions GC adds so that a
digest named by history within the restore window keeps its manifest and blobs.
Imports nothing from core: every function takes the open connection or store.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import once


class MetadataStore(Protocol):
    """What pruning needs of the store (store.py holds a ``TagHook``: no import back)."""

    def write(self) -> AbstractContextManager[Connection]: ...

BLOB, CHILD = "blob", "child"
# What TagHook.setting returns when it did not read the tag's current target.
NOT_READ = "not read"


class TagHook:
    """Called by the store inside the transaction that changes a tag; may raise to
    refuse the change (the transaction then rolls back, nothing changed)."""

    def setting(self, conn: Connection, repo_id: int, tag: str, manifest_id: int,
                digest: str | None = None) -> str | None:
        """Before ``tag`` is pointed at ``manifest_id`` (created or moved); ``digest``:
        the manifest's, when the caller knows it (None: read it). Returns the digest
        the tag names now (None: no such tag), read under the tag's lock in this
        transaction, or NOT_READ: the store's event hook then reads it itself."""
        return NOT_READ

    def deleting(self, conn: Connection, repo_id: int, tag: str) -> None:
        """Before ``tag`` is deleted (it may not exist)."""

    def deleting_manifest(self, conn: Connection, repo_id: int, manifest_id: int) -> None:
        """Before a manifest and every tag on it are deleted by digest."""


# -- reads the hook needs ----------------------------------------------------------
def current_digest(conn: Connection, repo_id: int, tag: str) -> str | None:
    m, tg = t.manifests, t.tags
    # Every tag push reads it: compiled once (prepared.once).
    return once(conn, "tag_history.current_digest", lambda: sa.select(m.c.digest).select_from(
        tg.join(m, m.c.id == tg.c.manifest_id)).where(
        tg.c.repository_id == sa.bindparam("repo"), tg.c.name == sa.bindparam("tag")),
    ).rows(conn, repo=repo_id, tag=tag).scalar()


def digest_of(conn: Connection, manifest_id: int) -> str:
    return conn.execute(
        sa.select(t.manifests.c.digest).where(t.manifests.c.id == manifest_id)
    ).scalar_one()


def tags_of(conn: Connection, manifest_id: int) -> list[str]:
    return list(conn.execute(
        sa.select(t.tags.c.name).where(t.tags.c.manifest_id == manifest_id).order_by(t.tags.c.name)
    ).scalars())


def repository_name(conn: Connection, repo_id: int) -> str:
    return conn.execute(
        sa.select(t.repositories.c.name).where(t.repositories.c.id == repo_id)
    ).scalar_one()


# -- history -----------------------------------------------------------------------
def record(conn: Connection, repo_id: int, tag: str, action: str, digest: str | None,
           previous: str | None, actor: dict[str, Any], at: float | None = None) -> None:
    h = t.tag_history
    once(conn, "tag_history.record", lambda: h.insert().values(
        {name: sa.bindparam(name) for name in _RECORD_COLUMNS})).rows(
        conn, repository_id=repo_id, tag=tag, action=action, digest=digest,
        previous_digest=previous, actor_kind=actor["kind"],
        actor_name=(actor.get("name") or None),
        actor_address=(actor.get("address") or "")[:64] or None,
        request_id=(actor.get("request_id") or "")[:64] or None,
        at=time.time() if at is None else at,
    )


_RECORD_COLUMNS = ("repository_id", "tag", "action", "digest", "previous_digest", "actor_kind",
                   "actor_name", "actor_address", "request_id", "at")


def _named(repo_id: Any, digest: Any, since: float) -> sa.ColumnElement[bool]:
    """History of the repository names ``digest`` (as target or as the digest a
    change took the tag from) at or after ``since``."""
    h = t.tag_history
    return sa.or_(
        sa.exists().where(h.c.repository_id == repo_id, h.c.digest == digest, h.c.at >= since),
        sa.exists().where(h.c.repository_id == repo_id, h.c.previous_digest == digest,
                          h.c.at >= since),
    )


def named_since(conn: Connection, repo_id: int, digest: str, since: float) -> bool:
    return bool(conn.execute(sa.select(_named(repo_id, digest, since))).scalar())


def tag_named_since(conn: Connection, repo_id: int, tag: str, digest: str,
                    since: float) -> bool:
    """The tag pointed at ``digest`` at some time since ``since``."""
    h = t.tag_history
    query = sa.select(h.c.id).where(
        h.c.repository_id == repo_id, h.c.tag == tag, h.c.at >= since,
        sa.or_(h.c.digest == digest, h.c.previous_digest == digest)).limit(1)
    return conn.execute(query).first() is not None


_COLUMNS = ("id", "tag", "action", "digest", "previous_digest", "actor_kind", "actor_name",
            "actor_address", "request_id", "at")


def entries(conn: Connection, repo_id: int, tag: str | None, limit: int,
            before_id: int | None = None) -> list[dict[str, Any]]:
    """Newest first, a keyset page below ``before_id``."""
    h = t.tag_history
    query = (sa.select(*(h.c[name] for name in _COLUMNS))
             .where(h.c.repository_id == repo_id).order_by(h.c.id.desc()).limit(limit))
    if tag is not None:
        query = query.where(h.c.tag == tag)
    if before_id is not None:
        query = query.where(h.c.id < before_id)
    return [dict(row._mapping) for row in conn.execute(query)]


def restorable(conn: Connection, repo_id: int, tag: str, since: float) -> list[dict[str, Any]]:
    """Digests the tag pointed at since ``since`` whose manifest is still held
    (stored, or retained after a delete by digest); newest first."""
    h, m, rm = t.tag_history, t.manifests, t.retained_manifests
    last: dict[str, float] = {}
    rows = conn.execute(
        sa.select(h.c.digest, h.c.previous_digest, h.c.at)
        .where(h.c.repository_id == repo_id, h.c.tag == tag, h.c.at >= since)
        .order_by(h.c.id)
    )
    for digest, previous, at in rows:
        for d in (previous, digest):
            if d:
                last[d] = at
    if not last:
        return []
    digests = list(last)
    stored = set(conn.execute(sa.select(m.c.digest).where(
        m.c.repository_id == repo_id, m.c.digest.in_(digests))).scalars())
    kept = set(conn.execute(sa.select(rm.c.digest).where(
        rm.c.repository_id == repo_id, rm.c.digest.in_(digests))).scalars())
    found = [{"digest": d, "last_seen_at": at, "stored": d in stored}
             for d, at in last.items() if d in stored or d in kept]
    return sorted(found, key=lambda row: -row["last_seen_at"])


# -- manifests deleted by digest, kept while restorable ------------------------------
def retain(conn: Connection, repo_id: int, manifest_id: int, now: float) -> None:
    """Copy a manifest about to be deleted, with its references."""
    m, rm, refs = t.manifests, t.retained_manifests, t.retained_manifest_refs
    row = conn.execute(sa.select(m.c.digest, m.c.media_type, m.c.payload, m.c.subject)
                       .where(m.c.id == manifest_id)).one()
    conn.execute(rm.delete().where(rm.c.repository_id == repo_id, rm.c.digest == row.digest))
    retained_id = conn.execute(rm.insert().values(
        repository_id=repo_id, digest=row.digest, media_type=row.media_type,
        payload=row.payload, subject=row.subject, deleted_at=now)).inserted_primary_key[0]
    blobs = conn.execute(sa.select(t.manifest_blobs.c.digest)
                         .where(t.manifest_blobs.c.manifest_id == manifest_id)).scalars()
    children = conn.execute(sa.select(t.manifest_children.c.child_digest)
                            .where(t.manifest_children.c.manifest_id == manifest_id)).scalars()
    rows = [{"retained_id": retained_id, "kind": BLOB, "digest": d} for d in set(blobs)]
    rows += [{"retained_id": retained_id, "kind": CHILD, "digest": d} for d in set(children)]
    if rows:
        conn.execute(refs.insert(), rows)


def retained(conn: Connection, repo_id: int, digest: str) -> tuple[str, bytes] | None:
    rm = t.retained_manifests
    row = conn.execute(sa.select(rm.c.media_type, rm.c.payload).where(
        rm.c.repository_id == repo_id, rm.c.digest == digest)).first()
    return (row.media_type, bytes(row.payload)) if row else None


# -- what GC must keep -----------------------------------------------------------------
def _live(rm: sa.Table, since: float | None) -> list[sa.ColumnElement[bool]]:
    """A retained manifest still restorable (history names it since ``since``); None:
    every retained manifest (pruning removes the others)."""
    return [] if since is None else [_named(rm.c.repository_id, rm.c.digest, since)]


def manifest_kept(m: sa.Table, since: float | None) -> sa.ColumnElement[bool]:
    """A stored manifest is kept: history names it within the window, or a retained
    manifest still restorable refers to it (an index's child, a referrer's subject)."""
    rm, refs = t.retained_manifests, t.retained_manifest_refs
    return sa.or_(
        _named(m.c.repository_id, m.c.digest, float("inf") if since is None else since),
        sa.exists().where(refs.c.kind == CHILD, refs.c.digest == m.c.digest,
                          rm.c.id == refs.c.retained_id, rm.c.repository_id == m.c.repository_id,
                          *_live(rm, since)),
        sa.exists().where(rm.c.repository_id == m.c.repository_id, rm.c.digest == m.c.subject,
                          *_live(rm, since)),
    )


def blob_kept(b: sa.Table, since: float | None = None) -> sa.ColumnElement[bool]:
    """A blob a retained manifest still restorable references."""
    rm, refs = t.retained_manifests, t.retained_manifest_refs
    return sa.exists().where(refs.c.digest == b.c.digest, refs.c.kind == BLOB,
                             rm.c.id == refs.c.retained_id, *_live(rm, since))


def prune(store: MetadataStore, entries_before: float, window_since: float) -> tuple[int, int]:
    """Delete history entries older than ``entries_before`` and retained manifests no
    entry within the window names; (entries, manifests) deleted."""
    rm, h = t.retained_manifests, t.tag_history
    with store.write() as conn:
        expired = list(conn.execute(sa.select(rm.c.id).where(
            ~_named(rm.c.repository_id, rm.c.digest, window_since))).scalars())
        if expired:
            conn.execute(t.retained_manifest_refs.delete().where(
                t.retained_manifest_refs.c.retained_id.in_(expired)))
            conn.execute(rm.delete().where(rm.c.id.in_(expired)))
        gone = conn.execute(h.delete().where(h.c.at < entries_before)).rowcount
    return gone, len(expired)
