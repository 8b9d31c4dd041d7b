"""The small writes read nothing twice: a tag push reads the tag's target once (the
history hook's read tells the events hook whether the tag moved), a mount checks
its source inside its own transaction, and a refused mount writes and flushes
nothing. The events and history they make are the same as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ociregistry.config import Settings
from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore
from ociregistry.runtime import Runtime, build_runtime

MT = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def runtime(tmp_path) -> Iterator[Runtime]:
    rt = build_runtime(Settings(data_dir=str(tmp_path)), migrate=True)
    yield rt
    rt.metadata.dispose()


class Trace:
    """Every statement SQLite runs on the store's connections (made from now on)."""

    def __init__(self, store: MetadataStore) -> None:
        self.statements: list[str] = []
        sa.event.listen(store.engine, "connect",
                        lambda conn, _rec: conn.set_trace_callback(self._add))
        store.engine.dispose()

    def _add(self, sql: str) -> None:
        text = " ".join(sql.split())
        if not self.statements or self.statements[-1] != text:  # not a trigger's repeat
            self.statements.append(text)

    def take(self) -> list[str]:
        taken, self.statements = self.statements, []
        return taken


def _push_image(rt: Runtime, repo: str, seed: int) -> tuple[bytes, str]:
    config = json.dumps({"seed": seed}).encode()
    rt.registry.uploads.monolithic(repo, _digest(config), [config])
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
        "size": len(config)}}).encode()
    return manifest, _digest(config)


def _events(rt: Runtime, action: str) -> list[dict]:
    with rt.metadata.read() as conn:
        rows = conn.execute(sa.select(t.events).where(t.events.c.action == action)
                            .order_by(t.events.c.id)).all()
    return [{"repository": r.repository, "digest": r.digest, "media_type": r.media_type,
             **json.loads(r.body)}
            for r in rows]


def _history(rt: Runtime) -> list[tuple[str, str, str | None]]:
    h = t.tag_history
    with rt.metadata.read() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(h.c.tag, h.c.action, h.c.previous_digest).order_by(h.c.id))]


def test_a_tag_push_reads_the_tag_once_and_moves_are_still_events(runtime: Runtime) -> None:
    rt = runtime
    first, _ = _push_image(rt, "team/app", 1)
    second, _ = _push_image(rt, "team/app", 2)
    trace = Trace(rt.metadata)
    rt.registry.put_manifest("team/app", "v1", first, MT)  # a new tag
    reads = [s for s in trace.take() if s.startswith("SELECT") and "FROM tags" in s]
    assert len(reads) == 1, reads  # the history hook's; the events hook asks no more
    rt.registry.put_manifest("team/app", "v1", first, MT)  # the same digest: no change
    rt.registry.put_manifest("team/app", "v1", second, MT)  # a move
    [moved] = _events(rt, "tag.moved")
    assert moved["repository"] == "team/app" and moved["digest"] == _digest(second)
    assert moved["tags"] == ["v1"] and moved["details"] == {"from_digest": _digest(first)}
    assert moved["size"] == len(second) and moved["media_type"] == MT
    assert _history(rt) == [("v1", "push", None), ("v1", "move", _digest(first))]
    assert [e["tags"] for e in _events(rt, "manifest.pushed")] == [["v1"], ["v1"], ["v1"]]


def test_without_the_history_hook_a_move_is_read_by_the_events_hook(runtime: Runtime) -> None:
    """A bare store's hook reads nothing (NOT_READ): the events hook reads for itself."""
    from ociregistry.metadata.tag_history_queries import TagHook

    rt = runtime
    rt.metadata.tag_hook = TagHook()
    first, _ = _push_image(rt, "team/app", 1)
    second, _ = _push_image(rt, "team/app", 2)
    rt.registry.put_manifest("team/app", "v1", first, MT)
    rt.registry.put_manifest("team/app", "v1", first, MT)
    assert _events(rt, "tag.moved") == []
    rt.registry.put_manifest("team/app", "v1", second, MT)
    [moved] = _events(rt, "tag.moved")
    assert moved["details"] == {"from_digest": _digest(first)}


def test_a_mount_checks_its_source_in_its_transaction(runtime: Runtime) -> None:
    rt = runtime
    _, config = _push_image(rt, "src/app", 1)
    trace = Trace(rt.metadata)
    assert rt.registry.uploads.mount("dst/app", config, "src/app") is not None
    statements = trace.take()
    assert statements[0].startswith("BEGIN"), statements  # no read before the transaction
    checks = [s for s in statements if "FROM repositories JOIN repository_blobs" in s]
    assert len(checks) == 1 and "'src/app'" in checks[0], statements
    assert rt.metadata.repository_blob_size("dst/app", config) is not None
    [mounted] = _events(rt, "blob.mounted")
    assert mounted["details"] == {"from_repository": "src/app"}


def test_a_refused_mount_writes_and_flushes_nothing(runtime: Runtime) -> None:
    rt = runtime
    _, config = _push_image(rt, "src/app", 1)
    _push_image(rt, "other/app", 2)
    wal = rt.metadata.wal_sync
    assert wal is not None
    flushes = wal.flushes
    # The source does not hold it; an unknown source; an unknown digest without a source.
    assert rt.registry.uploads.mount("dst/app", config, "other/app") is None
    assert rt.registry.uploads.mount("dst/app", config, "no/such") is None
    assert rt.registry.uploads.mount("dst/app", _digest(b"never pushed"), None) is None
    assert wal.flushes == flushes
    with rt.metadata.read() as conn:
        assert conn.execute(sa.select(t.repositories.c.id).where(
            t.repositories.c.name == "dst/app")).first() is None
    assert _events(rt, "blob.mounted") == []
    # Without a source, any repository's link will do.
    assert rt.registry.uploads.mount("dst/app", config, None) is not None
    assert wal.flushes == flushes + 1
