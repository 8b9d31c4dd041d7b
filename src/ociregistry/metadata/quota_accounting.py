"""Quota usage kept exact, inside the transactions that change it.

A namespace's usage is the bytes of the distinct content its repositories hold:
blobs they link (upload, mount) or reference from a manifest, and the manifests
themselves (payload bytes), plus the bytes of their open uploads. ``quota_blobs``
counts, per quota and digest, the links, manifest references and manifests inside
the namespace; a digest's size is added when its count leaves 0 and taken
away when it comes back to 0. ``quotas.blob_bytes``/``upload_bytes`` hold the
sums. Every function here takes the caller's write transaction, so the figures
commit or roll back with the change they describe.

Concurrency (PostgreSQL, READ COMMITTED): every transaction that touches quota
figures first takes the advisory lock "quotas" shared; creating, recounting or
deleting a quota takes it exclusively, so the initial count and the incremental
updates never miss each other. Two pushes adding the same new blob to a
namespace meet on the ``quota_blobs`` primary key: the second waits for the
first's row and sees count 2, so the size is added once. The ``quotas`` row is
updated with ``x = x + delta ... RETURNING``: concurrent pushes into one
namespace queue on that row, and each sees the usage the previous committed,
which is what makes the limit exact. Every transaction locks the quota rows it
will touch first (in id order), then ``quota_blobs`` rows in (quota, digest) order,
so none waits for another in a cycle.
SQLite serialises writers already (BEGIN IMMEDIATE).

A change that makes usage grow beyond a quota's limit raises ``QuotaExceeded``
(the caller's transaction rolls back); one that makes it shrink never fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import once

LOCK_KEY = "quotas"


class QuotaExceeded(Exception):
    """A change would take a namespace over its limit (the transaction rolls back)."""

    def __init__(self, namespace: str, usage: int, limit: int, requested: int) -> None:
        self.namespace, self.usage, self.limit, self.requested = (
            namespace, usage, limit, requested)
        super().__init__(f"quota of {namespace} exceeded: {usage} + {requested} > {limit}")


@dataclass
class WarningCrossed:
    """Usage of a namespace went past its warning threshold in this transaction."""

    quota_id: int
    namespace: str
    usage: int
    warning: int
    limit: int


# Called inside the transaction when a warning threshold is crossed (the change
# may still roll back afterwards): (connection, crossing). The events outbox hooks
# in here; core/quotas.py adds the metric and log line.
warning_observers: list[Callable[[Connection, WarningCrossed], None]] = []


def lock(store: Any, conn: Connection, exclusive: bool = False) -> None:
    """The "quotas" lock (PostgreSQL; SQLite writers are serialised already)."""
    store.lock_digest(conn, LOCK_KEY, shared=not exclusive)


def _in(column: sa.ColumnElement, values: Iterable[Any]) -> sa.ColumnElement[bool]:
    return column.in_(sa.bindparam(None, sorted(set(values)), expanding=True))


def _lock_rows(conn: Connection, quota_ids: Any) -> None:
    """PostgreSQL: the quota rows first, in id order, before any quota_blobs row, in
    every transaction: an upload's end (quota row, then the blob's count) and a manifest
    push (counts, then quota row) would otherwise wait for each other in a cycle."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: one writer at a time
    q = t.quotas
    ids = quota_ids if isinstance(quota_ids, sa.Select) else sa.bindparam(
        None, sorted(set(quota_ids)), expanding=True)
    # FOR NO KEY UPDATE, the lock the usage UPDATE takes: it does not conflict with the
    # key-share locks that inserting quota_repositories rows (foreign key) holds.
    conn.execute(sa.select(q.c.id).where(q.c.id.in_(ids)).order_by(q.c.id)
                 .with_for_update(key_share=True))


def quotas_of(store: Any, conn: Connection, repo_id: int) -> list[int]:
    lock(store, conn)
    qr = t.quota_repositories
    return list(once(conn, "quota.quotas_of", lambda: sa.select(qr.c.quota_id).where(
        qr.c.repository_id == sa.bindparam("repo")).order_by(qr.c.quota_id),
    ).rows(conn, repo=repo_id).scalars())


def _covering(conn: Connection) -> sa.Select:
    """The quotas covering repository :repo, in id order (PostgreSQL: rows locked)."""
    qr, q = t.quota_repositories, t.quotas
    covering = (sa.select(q.c.id).select_from(q.join(qr, qr.c.quota_id == q.c.id))
                .where(qr.c.repository_id == sa.bindparam("repo")).order_by(q.c.id))
    if conn.dialect.name == "postgresql":
        covering = covering.with_for_update(key_share=True, of=q)
    return covering


def add_refs(store: Any, conn: Connection, repo_id: int, digests: Sequence[str],
             manifest: tuple[str, int] | None = None) -> None:
    """One more link or manifest reference to each blob of ``digests`` in ``repo_id``,
    and to the ``manifest`` stored there (its digest and payload size), if given."""
    if not digests and manifest is None:
        return
    lock(store, conn)
    qr, b, qb = t.quota_repositories, t.blobs, t.quota_blobs
    # The repository's quotas, their rows locked first (see _lock_rows); none: done.
    # Every link and manifest push asks: compiled once (prepared.once).
    if not once(conn, "quota.covering", lambda: _covering(conn)).rows(
            conn, repo=repo_id).first():
        return
    parts = []
    if digests:
        parts.append(sa.select(b.c.digest, b.c.size).where(_in(b.c.digest, digests)))
    if manifest is not None:
        parts.append(sa.select(sa.literal(manifest[0], t.Digest).label("digest"),
                               sa.literal(manifest[1], sa.BigInteger).label("size")))
    held = (sa.union_all(*parts) if len(parts) > 1 else parts[0]).subquery("held")
    source = (
        sa.select(qr.c.quota_id, held.c.digest, held.c.size, sa.literal(1).label("refs"))
        .select_from(qr.join(held, sa.true()))
        .where(qr.c.repository_id == repo_id)
        .order_by(qr.c.quota_id, held.c.digest)
    )
    statement = (
        store._insert(qb).from_select(["quota_id", "digest", "size", "refs"], source)
    )
    statement = statement.on_conflict_do_update(
        index_elements=["quota_id", "digest"], set_={"refs": qb.c.refs + 1}
    ).returning(qb.c.quota_id, qb.c.size, qb.c.refs)
    deltas: dict[int, int] = {}
    for quota_id, size, refs in conn.execute(statement):
        deltas.setdefault(quota_id, 0)
        if refs == 1:  # the namespace's first reference: its bytes now count
            deltas[quota_id] += size
    apply(conn, {q: (d, 0) for q, d in deltas.items()})


def drop_refs(conn: Connection, counts: dict[tuple[int, str], int]) -> None:
    """Take ``n`` references away per (quota, digest); a digest at 0 gives its bytes back."""
    qb = t.quota_blobs
    _lock_rows(conn, {quota_id for quota_id, _ in counts})
    deltas: dict[int, int] = {}
    for (quota_id, digest), n in sorted(counts.items()):
        key = (qb.c.quota_id == quota_id) & (qb.c.digest == digest)
        row = conn.execute(
            qb.update().where(key).values(refs=qb.c.refs - n).returning(qb.c.refs, qb.c.size)
        ).first()
        if row is None:
            continue
        if row.refs <= 0:
            conn.execute(qb.delete().where(key))
            deltas[quota_id] = deltas.get(quota_id, 0) - row.size
    apply(conn, {q: (d, 0) for q, d in deltas.items()})


def drop_link(store: Any, conn: Connection, repo_id: int, digest: str) -> None:
    """A repository's link to a blob was removed."""
    quota_ids = quotas_of(store, conn, repo_id)
    if quota_ids:
        drop_refs(conn, {(q, digest): 1 for q in quota_ids})


def drop_all_links(store: Any, conn: Connection, digest: str) -> None:
    """Every link to ``digest`` is about to be removed (GC, check --repair)."""
    lock(store, conn)
    rb, qr = t.repository_blobs, t.quota_repositories
    rows = conn.execute(
        sa.select(qr.c.quota_id, sa.func.count())
        .select_from(rb.join(qr, qr.c.repository_id == rb.c.repository_id))
        .where(rb.c.digest == digest).group_by(qr.c.quota_id)
    ).all()
    if rows:
        drop_refs(conn, {(q, digest): n for q, n in rows})


def drop_manifests(store: Any, conn: Connection, manifest_ids: Sequence[int]) -> None:
    """The manifests ``manifest_ids`` are about to be deleted with their references."""
    if not manifest_ids:
        return
    lock(store, conn)
    mb, m, qr = t.manifest_blobs, t.manifests, t.quota_repositories
    in_namespace = qr.c.repository_id == m.c.repository_id
    blob_refs = (
        sa.select(qr.c.quota_id, mb.c.digest, sa.func.count())
        .select_from(mb.join(m, m.c.id == mb.c.manifest_id).join(qr, in_namespace))
        .where(_in(mb.c.manifest_id, manifest_ids))
        .group_by(qr.c.quota_id, mb.c.digest)
    )
    own = (
        sa.select(qr.c.quota_id, m.c.digest, sa.func.count())
        .select_from(m.join(qr, in_namespace))
        .where(_in(m.c.id, manifest_ids))
        .group_by(qr.c.quota_id, m.c.digest)
    )
    counts: dict[tuple[int, str], int] = {}
    for statement in (blob_refs, own):
        for quota_id, digest, n in conn.execute(statement):
            counts[(quota_id, digest)] = counts.get((quota_id, digest), 0) + n
    if counts:
        drop_refs(conn, counts)


def upload_quotas(store: Any, conn: Connection, upload_id: str) -> tuple[int, list[int]]:
    """(saved size, quotas) of an upload session, before it changes."""
    lock(store, conn)
    u, qr = t.uploads, t.quota_repositories
    rows = once(conn, "quota.upload_quotas", lambda: sa.select(u.c.size, qr.c.quota_id)
                .select_from(u.join(qr, qr.c.repository_id == u.c.repository_id))
                .where(u.c.id == sa.bindparam("id")).order_by(qr.c.quota_id),
                ).rows(conn, id=upload_id).all()
    return (rows[0][0] if rows else 0), [row[1] for row in rows]


def upload_changed(store: Any, conn: Connection, repo_id: int | None,
                   quota_ids: Sequence[int] | None, delta: int) -> None:
    """An open upload of ``repo_id`` grew (saved chunk) or went (finished, failed, expired)."""
    if not delta:
        return
    if quota_ids is None:
        quota_ids = quotas_of(store, conn, repo_id) if repo_id is not None else []
    apply(conn, {q: (0, delta) for q in quota_ids})


def apply(conn: Connection, deltas: dict[int, tuple[int, int]]) -> None:
    """Add (blob bytes, upload bytes) to each quota's usage, checking its limit."""
    q = t.quotas
    for quota_id in sorted(deltas):
        blob_delta, upload_delta = deltas[quota_id]
        change = blob_delta + upload_delta
        if not blob_delta and not upload_delta:
            continue
        row = conn.execute(
            q.update().where(q.c.id == quota_id)
            .values(blob_bytes=q.c.blob_bytes + blob_delta,
                    upload_bytes=q.c.upload_bytes + upload_delta)
            .returning(q.c.pattern, q.c.blob_bytes, q.c.upload_bytes, q.c.limit_bytes,
                       q.c.warning_bytes)
        ).first()
        if row is None or change <= 0:
            continue  # a quota deleted meanwhile; shrinking is never refused
        after = row.blob_bytes + row.upload_bytes
        before = after - change
        if after > row.limit_bytes:
            raise QuotaExceeded(row.pattern, before, row.limit_bytes, change)
        warning = row.warning_bytes
        if warning is not None and before < warning <= after:
            crossing = WarningCrossed(quota_id, row.pattern, after, warning, row.limit_bytes)
            for observer in list(warning_observers):
                observer(conn, crossing)
