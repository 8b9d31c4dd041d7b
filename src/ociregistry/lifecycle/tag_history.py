"""Tag history and restore.

``TagLifecycle`` is the hook the metadata store calls inside the transaction that
changes a tag (metadata/tag_history_queries.TagHook): it asks the tag rules
whether the change is allowed, then records it (pushed, moved from A to B,
deleted, restored; by ``current_actor()``; when). A refusal raises inside that
transaction, so nothing changes. A push of the digest a tag already names is no
change and records nothing.

A manifest deleted by digest while history within the restore window names it
is copied (bytes and references) before it goes: GC keeps what history or such a
copy references until the window ends, so a restore brings back the very bytes.

``TagHistory.restore`` pushes the old manifest again under the tag, through
``Registry.put_manifest``: the same checks (blobs present, sizes), locks and
rules as any push; the entry it writes says ``restore``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from ociregistry import metrics
from ociregistry.core.actor import current_actor
from ociregistry.core.digests import parse_digest
from ociregistry.core.errors import ManifestUnknown, NameUnknown
from ociregistry.core.names import validate_name, validate_tag
from ociregistry.core.registry import Registry
from ociregistry.lifecycle.tag_rules import TagRules
from ociregistry.metadata import tag_history_queries as q
from ociregistry.metadata.store import MetadataStore

PUSH, MOVE, DELETE, RESTORE = "push", "move", "delete", "restore"
_restoring: ContextVar[bool] = ContextVar("ociregistry_tag_restoring", default=False)


@contextmanager
def _as_restore() -> Iterator[None]:
    token = _restoring.set(True)
    try:
        yield
    finally:
        _restoring.reset(token)


def _once(fn: Callable[[], str]) -> Callable[[], str]:
    cache: list[str] = []
    return lambda: cache[0] if cache else cache.append(fn()) or cache[0]


def _actor() -> dict[str, Any]:
    # asdict's field-by-field deepcopy, for four strings, cost more than the row's insert.
    actor = current_actor()
    return {"kind": actor.kind, "name": actor.name, "address": actor.address,
            "request_id": actor.request_id}


class TagLifecycle(q.TagHook):
    """Rules and history for every tag change the store makes."""

    def __init__(self, rules: TagRules, window_seconds: float) -> None:
        self.rules = rules
        self.window = window_seconds

    def _lock(self, conn: Connection, repo_id: int, tag: str) -> None:
        # Two pushes of one tag at once (PostgreSQL, READ COMMITTED) would both read
        # "no tag yet" and the second would move an immutable tag: one at a time.
        self.rules.store.lock_digest(conn, f"tag:{repo_id}:{tag}")

    def setting(self, conn: Connection, repo_id: int, tag: str, manifest_id: int,
                digest: str | None = None) -> str | None:
        self._lock(conn, repo_id, tag)
        previous = q.current_digest(conn, repo_id, tag)
        if digest is None:
            digest = q.digest_of(conn, manifest_id)
        if previous == digest:
            return previous  # the same digest again: idempotent, even on an immutable tag
        action = RESTORE if _restoring.get() else (PUSH if previous is None else MOVE)
        self.rules.check(conn, lambda: q.repository_name(conn, repo_id), tag, action, previous,
                         current_actor())
        q.record(conn, repo_id, tag, action, digest, previous, _actor())
        return previous

    def deleting(self, conn: Connection, repo_id: int, tag: str) -> None:
        self._lock(conn, repo_id, tag)
        previous = q.current_digest(conn, repo_id, tag)
        if previous is None:
            return
        self.rules.check(conn, lambda: q.repository_name(conn, repo_id), tag, DELETE, previous,
                         current_actor())
        q.record(conn, repo_id, tag, DELETE, None, previous, _actor())

    def deleting_manifest(self, conn: Connection, repo_id: int, manifest_id: int) -> None:
        digest = q.digest_of(conn, manifest_id)
        tags = q.tags_of(conn, manifest_id)
        for tag in tags:
            self._lock(conn, repo_id, tag)
        tags = q.tags_of(conn, manifest_id) if tags else tags  # as they are once locked
        if tags:
            name = _once(lambda: q.repository_name(conn, repo_id))
            for tag in tags:  # every tag allowed, or nothing happens
                self.rules.check(conn, name, tag, DELETE, digest, current_actor())
        now = time.time()
        for tag in tags:
            q.record(conn, repo_id, tag, DELETE, None, digest, _actor(), now)
        if self.window > 0 and q.named_since(conn, repo_id, digest, now - self.window):
            q.retain(conn, repo_id, manifest_id, now)


@dataclass
class Restored:
    repository: str
    tag: str
    digest: str
    previous: str | None
    changed: bool


class TagHistory:
    """Reading a tag's history and restoring it (API, UI, CLI)."""

    def __init__(self, registry: Registry, store: MetadataStore, rules: TagRules,
                 window_seconds: float) -> None:
        self.registry = registry
        self.store = store
        self.rules = rules
        self.window = window_seconds

    def _repo_id(self, conn: Connection, name: str) -> int:
        validate_name(name)
        repo_id = self.store.repository_id(conn, name)
        if repo_id is None:
            raise NameUnknown(detail={"name": name})
        return repo_id

    def entries(self, name: str, tag: str | None, limit: int = 100,
                before_id: int | None = None) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return q.entries(conn, self._repo_id(conn, name),
                             validate_tag(tag) if tag else None, limit, before_id)

    def restorable(self, name: str, tag: str) -> list[dict[str, Any]]:
        """Digests the tag can be restored to now, newest first."""
        with self.store.read() as conn:
            return q.restorable(conn, self._repo_id(conn, name), validate_tag(tag),
                                time.time() - self.window)

    def restore(self, name: str, tag: str, digest: str) -> Restored:
        """Point ``tag`` at ``digest`` again, if it pointed there within the window."""
        validate_tag(tag)
        parse_digest(digest)
        with self.store.read() as conn:
            repo_id = self._repo_id(conn, name)
            since = time.time() - self.window
            if self.window <= 0 or not q.tag_named_since(conn, repo_id, tag, digest, since):
                raise ManifestUnknown(
                    f"tag {tag} in {name} did not point at {digest} within the restore "
                    f"window ({self.window / 86400:g} days)",
                    {"name": name, "tag": tag, "digest": digest})
            previous = q.current_digest(conn, repo_id, tag)
        row = self.store.get_manifest(name, digest, True)
        if row is not None:
            media_type, payload = row.media_type, row.payload
        else:
            with self.store.read() as conn:
                kept = q.retained(conn, repo_id, digest)
            if kept is None:
                raise ManifestUnknown(f"manifest {digest} of {name} is no longer held",
                                      {"name": name, "digest": digest})
            media_type, payload = kept
        with _as_restore():
            self.registry.put_manifest(name, tag, payload, media_type)
        metrics.record_tag_restore()
        return Restored(name, tag, digest, previous, previous != digest)
