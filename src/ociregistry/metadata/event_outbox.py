"""The events outbox: event rows written in the transaction of the change they describe.

``MetadataStore.events`` is an ``Outbox``. Anything that changes the index calls
``store.events.emit(conn, action, ...)`` inside its ``with store.write() as conn``;
the event waits in the connection's ``info`` and is inserted when the block ends
without error, as the transaction's last statements. On PostgreSQL that insert
first takes a transaction-scoped advisory lock, so event ids are handed out in
commit order (SQLite serialises writers anyway): a delivery cursor that has
passed an id never sees a smaller one commit later. A rolled back transaction
writes nothing. Disabled (the default for a bare store), emit costs one
attribute test.

This module imports nothing from core: the row's stamp (id, time, actor,
instance) comes from a callable the events package installs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import schema as t
from ociregistry.metadata.prepared import Prepared

PENDING = "ociregistry.events.pending"
EVENTS_LOCK = 0x6F637265  # "ocre": the outbox's commit-order lock on PostgreSQL
_COLUMNS = ("uid", "created_at", "action", "repository", "digest", "media_type", "artifact_type")

Stamp = Callable[[str, dict[str, Any]], dict[str, Any]]


def _statements(dialect: sa.Dialect) -> dict[str, Prepared]:
    m, r, tg, e = t.manifests, t.repositories, t.tags, t.events
    bind = sa.bindparam
    return {name: Prepared(stmt, dialect) for name, stmt in {
        "insert": e.insert().values({c: bind(c) for c in (*_COLUMNS, "body")}),
        "old_target": sa.select(m.c.digest, r.c.name)
        .select_from(tg.join(m, m.c.id == tg.c.manifest_id).join(r, r.c.id == tg.c.repository_id))
        .where(tg.c.repository_id == bind("repo"), tg.c.name == bind("tag"),
               tg.c.manifest_id != bind("manifest")),
        "manifest": sa.select(m.c.digest, m.c.media_type, m.c.artifact_type, m.c.size)
        .where(m.c.id == bind("manifest")),
        "tag_target": sa.select(m.c.digest).select_from(tg.join(m, m.c.id == tg.c.manifest_id))
        .where(tg.c.repository_id == bind("repo"), tg.c.name == bind("tag")),
    }.items()}


class Outbox:
    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect.name
        self._sql = _statements(dialect)
        self.enabled = False
        self.stamp: Stamp | None = None  # set by the events package
        self.on_commit: Callable[[list[str]], Any] | None = None  # metrics, local delivery
        self.on_pull: Callable[..., None] | None = None  # the pull buffer

    def install(self, stamp: Stamp) -> None:
        self.stamp, self.enabled = stamp, True

    # -- the one function other capabilities call --------------------------------
    def emit(self, conn: Connection, action: str, *, repository: str | None = None,
             digest: str | None = None, tags: Sequence[str] = (),
             media_type: str | None = None, artifact_type: str | None = None,
             size: int | None = None, **details: Any) -> None:
        """Record ``action`` as part of ``conn``'s transaction (written at its commit).

        ``details``: any JSON-serialisable extras (``from_digest``, ``freed``...),
        passed through to receivers under ``details``.
        """
        if not self.enabled:
            return
        fields = {"repository": repository, "digest": digest, "tags": list(tags),
                  "media_type": media_type, "artifact_type": artifact_type, "size": size,
                  "details": details}
        conn.info.setdefault(PENDING, []).append(self.stamp(action, fields))  # type: ignore[misc]

    @contextmanager
    def transaction(self, conn: Connection) -> Iterator[None]:
        """Around a write transaction's body: insert its events last, or drop them."""
        if not self.enabled:
            yield
            return
        conn.info.pop(PENDING, None)
        try:
            yield
            pending = conn.info.pop(PENDING, None)
            if pending:
                self.write(conn, pending)
        finally:
            conn.info.pop(PENDING, None)

    def write(self, conn: Connection, pending: list[dict[str, Any]]) -> None:
        if self.dialect == "postgresql":
            # The two-key form: a key space apart from the digest locks' (one bigint).
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({EVENTS_LOCK}, 0)"))
        rows = [{**{k: e.get(k) for k in _COLUMNS},
                 "body": json.dumps({k: v for k, v in e.items() if k not in _COLUMNS})}
                for e in pending]
        self._sql["insert"].many(conn, rows)
        if self.on_commit is not None:
            self.on_commit([e["action"] for e in pending])

    def pulled(self, repository: str, reference: str, digest: str, media_type: str,
               size: int) -> None:
        """A manifest GET (never a HEAD): buffered, written later in batches."""
        if self.on_pull is not None:
            self.on_pull(repository, reference, digest, media_type, size)

    # -- hooks of store.py ---------------------------------------------------------
    def tag_moving(self, conn: Connection, repo_id: int, tag: str, manifest_id: int) -> None:
        """Before a tag is set: a "tag.moved" event when it pointed at another manifest."""
        if not self.enabled:
            return
        old = self._sql["old_target"].rows(conn, repo=repo_id, tag=tag,
                                          manifest=manifest_id).first()
        if old is None:
            return
        new = self._sql["manifest"].rows(conn, manifest=manifest_id).one()
        self.emit(conn, "tag.moved", repository=old[1], digest=new[0], tags=[tag],
                  media_type=new[1], artifact_type=new[2], size=new[3], from_digest=old[0])

    def tag_target(self, conn: Connection, repo_id: int, tag: str) -> str | None:
        """The digest a tag points at (read before deleting it), when events are on."""
        if not self.enabled:
            return None
        return self._sql["tag_target"].rows(conn, repo=repo_id, tag=tag).scalar()

    def manifests_deleting(self, conn: Connection, ids: Sequence[int]) -> None:
        """Before manifests are deleted: one "manifest.deleted" each (with the tags that
        go with it), and "repository.emptied" for a repository left with none."""
        if not self.enabled or not ids:
            return
        m, r, tg = t.manifests, t.repositories, t.tags
        rows = conn.execute(
            sa.select(m.c.id, m.c.repository_id, r.c.name, m.c.digest, m.c.media_type,
                      m.c.artifact_type, m.c.size)
            .select_from(m.join(r, r.c.id == m.c.repository_id)).where(m.c.id.in_(ids))
        ).all()
        tags: dict[int, list[str]] = {}
        for manifest_id, name in conn.execute(
                sa.select(tg.c.manifest_id, tg.c.name).where(tg.c.manifest_id.in_(ids))):
            tags.setdefault(manifest_id, []).append(name)
        repos: dict[int, str] = {}
        for row in rows:
            repos[row.repository_id] = row.name
            self.emit(conn, "manifest.deleted", repository=row.name, digest=row.digest,
                      tags=sorted(tags.get(row.id, [])), media_type=row.media_type,
                      artifact_type=row.artifact_type, size=row.size)
        for repo_id, name in repos.items():
            left = conn.execute(sa.select(m.c.id).where(
                m.c.repository_id == repo_id, m.c.id.not_in(ids)).limit(1)).first()
            if left is None:
                self.emit(conn, "repository.emptied", repository=name)
