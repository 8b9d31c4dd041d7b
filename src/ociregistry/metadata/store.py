"""Queries of the metadata index. Every listing is an indexed query."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ociregistry.metadata import hot_reads, quota_accounting, quota_queries, repository_stats
from ociregistry.metadata import schema as t
from ociregistry.metadata import write_statements as w
from ociregistry.metadata.driver_transaction import driver_transaction
from ociregistry.metadata.engine import SQLITE_BUSY_TIMEOUT, create_engine
from ociregistry.metadata.event_outbox import Outbox
from ociregistry.metadata.hot_reads import Statement
from ociregistry.metadata.prepared import Prepared
from ociregistry.metadata.tag_history_queries import NOT_READ, TagHook
from ociregistry.metadata.tag_list_cache import TagListCache
from ociregistry.metadata.upload_store import UploadRow, UploadStore
from ociregistry.metadata.wal_sync import WalSync
from ociregistry.metadata.writer_queue import WriterQueue

__all__ = ["ManifestRow", "MetadataStore", "UploadRow"]


@dataclass
class ManifestRow:
    id: int
    digest: str
    media_type: str
    payload: bytes
    subject: str | None = None


class MetadataStore(UploadStore):
    """The index behind the registry, on SQLite or PostgreSQL."""

    def __init__(self, url: str, pool_size: int = 5, durable: bool = True,
                 tags_cache_bytes: int = 0) -> None:
        self.url = url
        # Durable SQLite: commits flush the WAL after releasing the write lock
        # (wal_sync.py), so the connections themselves don't (NORMAL).
        self.wal_sync = WalSync.for_url(url) if durable else None
        self.engine = create_engine(
            url, pool_size=pool_size, durable=durable and self.wal_sync is None
        )
        self.dialect = self.engine.dialect.name
        self._writer = self.engine.execution_options(immediate=True)
        # SQLite writers wait their turn in the kernel, not in the busy handler.
        self.writer_queue = WriterQueue.for_url(url, SQLITE_BUSY_TIMEOUT)
        statements = hot_reads.statements()
        self._hot = {key: Prepared(stmt, self.engine.dialect) for key, stmt in statements.items()}
        # The same statements on a driver cursor (hot_reads.py): manifest and blob
        # lookups, tags pages.
        self._fast = {key: Statement(stmt, self.engine) for key, stmt in statements.items()}
        self._tags_json = Statement(hot_reads.tags_json_statement(self.dialect), self.engine)
        # Tags list pages kept under the repository's tags_version (tag_list_cache.py).
        self.tags_cache = TagListCache(tags_cache_bytes) if tags_cache_bytes > 0 else None
        self.tag_hook = TagHook()  # lifecycle/tag_history.py: rules and history of tags
        self.events = Outbox(self.engine.dialect)  # events.emit(conn, ...): event_outbox.py

    # -- transactions -----------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, on disk when the block has ended without an error."""
        # Begun and ended on the driver connection (driver_transaction.py).
        with self._queued(), driver_transaction(self.engine) as conn, \
                self.events.transaction(conn):
            yield conn
        if self.wal_sync is not None:
            self.wal_sync.sync()

    def create_schema(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest migration; the revisions (before, after)."""
        from ociregistry.metadata.migrate import upgrade

        revisions = upgrade(self)
        if self.wal_sync is not None:
            self.wal_sync.sync()
        return revisions

    def dispose(self) -> None:
        self.engine.dispose()

    def check(self) -> None:
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def lock_digest(self, conn: Connection, digest: str, shared: bool = False) -> None:
        """Serialise a blob's deletion against pushes that reference it.

        SQLite writers are already serialised by BEGIN IMMEDIATE; PostgreSQL
        takes a transaction-scoped advisory lock on the digest.
        """
        if self.dialect == "postgresql":
            fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
            conn.execute(sa.text(f"SELECT {fn}(hashtext(:d))"), {"d": digest})

    def lock_manifest(
        self, conn: Connection, repo_id: int, digest: str, shared: bool = False
    ) -> None:
        """Serialise a manifest's insertion and deletion (PostgreSQL; SQLite: no-op).

        Shared for a push that references it as a child, exclusive for the push
        that inserts it and for the sweep that deletes it.
        """
        self.lock_digest(conn, f"manifest:{repo_id}:{digest}", shared=shared)

    # -- repositories -----------------------------------------------------
    def repository_id(self, conn: Connection, name: str) -> int | None:
        return w.repository_id(conn, name)

    def ensure_repository(self, conn: Connection, name: str) -> int:
        repo_id = self.repository_id(conn, name)
        if repo_id is None:
            repo_id = w.insert_repository(conn, name, time.time())
            if repo_id is not None:
                self.events.emit(conn, "repository.created", repository=name)
                quota_queries.map_new_repository(self, conn, repo_id, name)
            else:  # made meanwhile by another transaction
                repo_id = self.repository_id(conn, name)
        assert repo_id is not None
        return repo_id

    def catalog(self, n: int | None, last: str | None) -> list[str]:
        r = t.repositories
        has_manifest = sa.exists().where(t.manifests.c.repository_id == r.c.id)
        query = sa.select(r.c.name).where(has_manifest).order_by(r.c.name)
        if last:
            query = query.where(r.c.name > last)
        if n is not None:
            query = query.limit(n)
        with self.read() as conn:
            return conn.execute(query).scalars().all()

    def stored_counts(self) -> dict[str, int]:
        """Totals for metrics and the overview (indexed COUNTs)."""
        count = sa.func.count()
        with self.read() as conn:
            blobs, blob_bytes = conn.execute(
                sa.select(count, sa.func.coalesce(sa.func.sum(t.blobs.c.size), 0))
            ).one()
            return {
                "repositories": conn.execute(sa.select(count).select_from(t.repositories)).scalar(),
                "manifests": conn.execute(sa.select(count).select_from(t.manifests)).scalar(),
                "tags": conn.execute(sa.select(count).select_from(t.tags)).scalar(),
                "upload_sessions": conn.execute(sa.select(count).select_from(t.uploads)).scalar(),
                "blobs": blobs,
                "blob_bytes": int(blob_bytes),
            }

    # -- blobs ------------------------------------------------------------
    def blob_size(self, conn: Connection, digest: str) -> int | None:
        return conn.execute(
            sa.select(t.blobs.c.size).where(t.blobs.c.digest == digest)
        ).scalar()

    def repository_blob_size(self, name: str, digest: str) -> int | None:
        """Size of a blob as seen from a repository, None if not linked there."""
        row = self._fast["repository_blob_size"].first(name=name, digest=digest)
        return row[0] if row else None

    def record_blob(self, conn: Connection, repo_id: int, digest: str, size: int) -> None:
        """Insert or touch a blob and link it into a repository."""
        now = time.time()
        w.upsert_blob(conn, digest, size, now)
        if w.link_blob(conn, repo_id, digest, now):
            quota_accounting.add_refs(self, conn, repo_id, [digest])

    def linked_blob_size(self, conn: Connection, digest: str,
                         source: str | None = None) -> int | None:
        """A blob's size when at least one repository links it (what a mount
        without "from" may take), else None: blob_size and blob_linked in one.
        ``source``: only when that repository links it (a mount "from" it)."""
        if source is not None:
            return w.source_blob_size(conn, source, digest)
        return w.linked_blob_size(conn, digest)

    def blob_linked(self, conn: Connection, digest: str) -> bool:
        """True when at least one repository links the blob."""
        query = sa.select(t.repository_blobs.c.digest).where(
            t.repository_blobs.c.digest == digest
        )
        return conn.execute(query.limit(1)).first() is not None

    def unlink_blob(self, name: str, digest: str) -> bool:
        with self.write() as conn:
            # The lock an upload of the digest holds while publishing it, and that
            # a manifest push referencing it shares: a DELETE waits for either.
            self.lock_digest(conn, digest)
            repo_id = self.repository_id(conn, name)
            if repo_id is None:
                return False
            result = conn.execute(
                t.repository_blobs.delete().where(
                    t.repository_blobs.c.repository_id == repo_id,
                    t.repository_blobs.c.digest == digest,
                )
            )
            if result.rowcount > 0:
                quota_accounting.drop_link(self, conn, repo_id, digest)
            return result.rowcount > 0

    def linked_digests(self, conn: Connection, repo_id: int, digests: Sequence[str]) -> set[str]:
        if not digests:
            return set()
        rows = conn.execute(
            sa.select(t.repository_blobs.c.digest).where(
                t.repository_blobs.c.repository_id == repo_id,
                t.repository_blobs.c.digest.in_(list(set(digests))),
            )
        )
        return set(rows.scalars())

    def linked_blob_sizes(
        self, conn: Connection, repo_id: int, digests: Sequence[str]
    ) -> dict[str, int]:
        """Digest -> stored size of those ``digests`` that the repository links."""
        if not digests:
            return {}
        return w.linked_blob_sizes(conn, repo_id, sorted(set(digests)))

    # -- manifests --------------------------------------------------------
    def get_manifest(self, name: str, reference: str, by_digest: bool) -> ManifestRow | None:
        statement = self._fast["manifest_by_digest" if by_digest else "manifest_by_tag"]
        row = statement.first(name=name, ref=reference)
        return ManifestRow(*row) if row else None

    def manifest_id(self, conn: Connection, repo_id: int, digest: str) -> int | None:
        return w.manifest_id(conn, repo_id, digest)

    def existing_manifests(
        self, conn: Connection, repo_id: int, digests: Sequence[str]
    ) -> dict[str, int]:
        """Digest -> payload size of those ``digests`` stored in the repository,
        each locked (shared) against its deletion until the transaction ends."""
        if not digests:
            return {}
        for digest in sorted(set(digests)):
            self.lock_manifest(conn, repo_id, digest, shared=True)
        rows = conn.execute(
            sa.select(t.manifests.c.digest, t.manifests.c.size).where(
                t.manifests.c.repository_id == repo_id,
                t.manifests.c.digest.in_(list(set(digests))),
            )
        )
        return {digest: size for digest, size in rows}

    def insert_manifest(
        self,
        conn: Connection,
        repo_id: int,
        digest: str,
        media_type: str,
        payload: bytes,
        subject: str | None,
        artifact_type: str | None,
        annotations: dict[str, str] | None,
        blob_digests: Sequence[str],
        child_digests: Sequence[str],
    ) -> int:
        """Store a manifest and its references; an identical one is kept as is."""
        # Two pushes of the same manifest: the second waits, then finds the first's.
        self.lock_manifest(conn, repo_id, digest)
        existing = self.manifest_id(conn, repo_id, digest)
        if existing is not None:
            return existing
        manifest_id = w.insert_manifest(
            conn, repository_id=repo_id, digest=digest, media_type=media_type,
            size=len(payload), payload=payload, subject=subject, artifact_type=artifact_type,
            annotations=json.dumps(annotations) if annotations else None,
            created_at=time.time(),
        )
        if blob_digests:
            w.insert_manifest_blobs(conn, manifest_id, list(dict.fromkeys(blob_digests)))
        rows = repository_stats.annotation_rows(manifest_id, annotations or {})
        if rows:
            conn.execute(t.manifest_annotations.insert(), rows)
        if blob_digests:
            if self.dialect == "postgresql":
                # The stats row locked first: a concurrent push to the repository waits
                # here, and the next statement (a new snapshot) sees its references.
                self._hot["stats_lock"].rows(conn, repo=repo_id)
            self._hot["stats_add_manifest"].rows(conn, repo=repo_id, id=manifest_id)
        # Its bytes and its blobs' in the namespaces' usage (QuotaExceeded when over).
        quota_accounting.add_refs(self, conn, repo_id, list(dict.fromkeys(blob_digests)),
                                  (digest, len(payload)))
        if child_digests:
            conn.execute(
                t.manifest_children.insert(),
                [
                    {"manifest_id": manifest_id, "child_digest": d, "repository_id": repo_id}
                    for d in dict.fromkeys(child_digests)
                ],
            )
        return manifest_id

    def set_tag(self, conn: Connection, repo_id: int, tag: str, manifest_id: int,
                digest: str | None = None) -> None:
        """Point ``tag`` at the manifest (``digest``: its digest, when the caller has it)."""
        previous = self.tag_hook.setting(conn, repo_id, tag, manifest_id, digest)
        # A new tag, or the same digest again, is no move: the hook's read (same
        # transaction, under the tag's lock) says so without a second one.
        if previous == NOT_READ or digest is None or previous not in (None, digest):
            self.events.tag_moving(conn, repo_id, tag, manifest_id)
        w.upsert_tag(conn, repo_id, tag, manifest_id, time.time())

    def delete_tag(self, name: str, tag: str) -> bool:
        with self.write() as conn:
            repo_id = self.repository_id(conn, name)
            if repo_id is None:
                return False
            self.tag_hook.deleting(conn, repo_id, tag)
            digest = self.events.tag_target(conn, repo_id, tag)
            result = conn.execute(
                t.tags.delete().where(t.tags.c.repository_id == repo_id, t.tags.c.name == tag)
            )
            if result.rowcount:
                self.events.emit(conn, "tag.deleted", repository=name, digest=digest, tags=[tag])
            return result.rowcount > 0

    def delete_manifest(self, name: str, digest: str) -> bool:
        """Delete a manifest and every tag on it (references cascade)."""
        with self.write() as conn:
            repo_id = self.repository_id(conn, name)
            if repo_id is None:
                return False
            self.lock_manifest(conn, repo_id, digest)
            manifest_id = self.manifest_id(conn, repo_id, digest)
            if manifest_id is None:
                return False
            self.tag_hook.deleting_manifest(conn, repo_id, manifest_id)
            self._delete_manifest_rows(conn, [manifest_id])
            return True

    def _delete_manifest_rows(self, conn: Connection, ids: Sequence[int]) -> None:
        mb, m = t.manifest_blobs, t.manifests
        by_repository: dict[int, list[int]] = {}
        for manifest_id, repo_id in conn.execute(
            sa.select(m.c.id, m.c.repository_id).where(m.c.id.in_(ids))
        ):
            by_repository.setdefault(repo_id, []).append(manifest_id)
        for repo_id, manifest_ids in by_repository.items():
            digests = list(conn.execute(
                sa.select(mb.c.digest).where(mb.c.manifest_id.in_(manifest_ids)).distinct()
            ).scalars())
            if digests:
                repository_stats.subtract(conn, self._insert, repo_id, digests, manifest_ids)
        # After the stats rows (the order a push locks them in), before the references go.
        quota_accounting.drop_manifests(self, conn, ids)
        self.events.manifests_deleting(conn, ids)
        # Explicit deletes rather than relying on ON DELETE CASCADE everywhere.
        for table in (t.tags, t.manifest_blobs, t.manifest_children, t.manifest_annotations):
            conn.execute(table.delete().where(table.c.manifest_id.in_(ids)))
        conn.execute(t.manifests.delete().where(t.manifests.c.id.in_(ids)))

    def tags(self, name: str, n: int | None, last: str | None) -> list[str] | None:
        """Sorted tags of a repository after ``last``; None if the repository is unknown."""
        if n is None:
            n = -1 if self.dialect == "sqlite" else None  # type: ignore[assignment]
        return hot_reads.tags_page(self.engine, self._fast["repository_id"],
                                   self._fast["tags_page"], name, last or "", n)

    def tags_json(self, name: str, n: int | None, last: str | None
                  ) -> tuple[str, str | None, bool] | None:
        """``tags`` as a JSON array (text) of at most ``n``, its last, whether more follow."""
        if n is None:
            n = -1 if self.dialect == "sqlite" else None  # type: ignore[assignment]
        head = self._fast["repository_tags_version" if self.tags_cache else "repository_id"]
        return hot_reads.tags_json(self.engine, head, self._tags_json, name, last or "", n,
                                   self.tags_cache)

    def referrers(
        self, name: str, subject: str, artifact_type: str | None, n: int, last: str | None
    ) -> list[dict[str, Any]]:
        m = t.manifests
        query = (
            sa.select(m.c.digest, m.c.media_type, m.c.size, m.c.artifact_type, m.c.annotations)
            .select_from(m.join(t.repositories, t.repositories.c.id == m.c.repository_id))
            .where(t.repositories.c.name == name, m.c.subject == subject)
            .order_by(m.c.digest)
            .limit(n)
        )
        if artifact_type is not None:
            query = query.where(m.c.artifact_type == artifact_type)
        if last:
            query = query.where(m.c.digest > last)
        with self.read() as conn:
            rows = conn.execute(query).all()
        result = []
        for digest, media_type, size, art_type, annotations_json in rows:
            desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
            if art_type:
                desc["artifactType"] = art_type
            if annotations_json:
                desc["annotations"] = json.loads(annotations_json)
            result.append(desc)
        return result

    # -- locks ------------------------------------------------------------
    def try_lock(self, name: str, holder: str, ttl: float) -> bool:
        now = time.time()
        with self.write() as conn:
            # PostgreSQL: two instances must not both see the lock free.
            self.lock_digest(conn, f"lock:{name}")
            row = conn.execute(
                sa.select(t.locks.c.holder, t.locks.c.expires_at).where(t.locks.c.name == name)
            ).first()
            if row is not None and row.expires_at > now and row.holder != holder:
                return False
            conn.execute(
                self._insert(t.locks)
                .values(name=name, holder=holder, expires_at=now + ttl)
                .on_conflict_do_update(
                    index_elements=["name"], set_={"holder": holder, "expires_at": now + ttl}
                )
            )
            return True

    def unlock(self, name: str, holder: str) -> None:
        with self.write() as conn:
            conn.execute(
                t.locks.delete().where(t.locks.c.name == name, t.locks.c.holder == holder)
            )
