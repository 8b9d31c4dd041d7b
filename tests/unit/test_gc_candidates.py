"""The GC examines only candidates (migration 0017's triggers record them), so its
time follows the garbage, not the registry's size; and it still finds all of it.

The behaviour tests run on SQLite here and on PostgreSQL in
tests/cluster/test_pg_gc_candidates.py (same functions, another ``store``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.core.gc import GarbageCollector
from ociregistry.metadata import gc_queries as q
from ociregistry.metadata import schema as t
from ociregistry.metadata.migrate import upgrade
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage

OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    db = MetadataStore("sqlite:///" + str(tmp_path / "registry.db"))
    db.create_schema()
    yield db
    db.dispose()


def push(store: MetadataStore, repo: str, name: str, blobs: tuple[str, ...] = (),
         tag: str | None = None, children: tuple[str, ...] = (),
         subject: str | None = None) -> tuple[int, str]:
    """A manifest row as a push writes it (its blobs recorded first); (id, digest)."""
    payload = json.dumps({"name": name, "blobs": blobs, "children": children}).encode()
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    with store.write() as conn:
        repo_id = store.ensure_repository(conn, repo)
        for blob in blobs:
            store.record_blob(conn, repo_id, blob, 10)
        manifest_id = store.insert_manifest(
            conn, repo_id, digest, INDEX if children else OCI, payload, subject, None, None,
            list(blobs), list(children))
        if tag:
            store.set_tag(conn, repo_id, tag, manifest_id)
    return manifest_id, digest


def collect(store: MetadataStore, tmp_path: Path, dry_run: bool = False):  # noqa: ANN201
    storage = FilesystemStorage(str(tmp_path / "storage"), fsync=False)
    # grace -1: every row is already past it
    return GarbageCollector(store, storage, grace_seconds=-1).run(
        dry_run=dry_run, delete_untagged=True)


def manifest_ids(store: MetadataStore) -> set[int]:
    with store.read() as conn:
        return set(conn.execute(sa.select(t.manifests.c.id)).scalars())


def blob_digests(store: MetadataStore) -> set[str]:
    with store.read() as conn:
        return set(conn.execute(sa.select(t.blobs.c.digest)).scalars())


def candidates(store: MetadataStore) -> tuple[set[int], set[str]]:
    with store.read() as conn:
        return (set(conn.execute(sa.select(t.gc_manifest_candidates.c.manifest_id)).scalars()),
                set(conn.execute(sa.select(t.gc_blob_candidates.c.digest)).scalars()))


def test_a_run_forgets_what_is_alive_for_good_and_a_tag_deletion_records_it_again(
        store, tmp_path):
    kept, _ = push(store, "app", "kept", (sha("c1"), sha("l1")), tag="v1")
    freed, _ = push(store, "app", "freed", (sha("c2"), sha("l2")), tag="v2")
    assert kept in candidates(store)[0]  # a push is a candidate until a run sees its tag
    collect(store, tmp_path)
    assert candidates(store) == (set(), set())
    store.delete_tag("app", "v2")
    assert candidates(store) == ({freed}, set())
    result = collect(store, tmp_path)
    assert (result.manifests_deleted, result.blobs_deleted) == (1, 2)
    assert manifest_ids(store) == {kept}
    assert blob_digests(store) == {sha("c1"), sha("l1")}
    assert candidates(store) == (set(), set())


def test_the_gc_looks_at_candidates_only(store, tmp_path):
    """An untagged manifest nobody recorded is not even looked at: the GC's work is
    the candidates, whatever the number of other rows."""
    push(store, "app", "a", (sha("a"),), tag="a")
    hidden, _ = push(store, "app", "b", (sha("b"),), tag="b")
    collect(store, tmp_path)
    store.delete_tag("app", "b")
    with store.write() as conn:  # as if the trigger had not recorded it
        conn.execute(t.gc_manifest_candidates.delete())
    assert collect(store, tmp_path).manifests_deleted == 0
    assert hidden in manifest_ids(store)


def test_a_tag_moved_off_a_manifest_records_it(store, tmp_path):
    old, _ = push(store, "app", "old", (sha("o"),), tag="latest")
    collect(store, tmp_path)
    new, _ = push(store, "app", "new", (sha("n"),), tag="latest")
    assert old in candidates(store)[0]
    assert collect(store, tmp_path).manifests_deleted == 1
    assert manifest_ids(store) == {new}
    assert blob_digests(store) == {sha("n")}


def test_an_index_deleted_frees_its_children(store, tmp_path):
    child1, d1 = push(store, "app", "amd64", (sha("x1"),))
    child2, d2 = push(store, "app", "arm64", (sha("x2"),))
    index, _ = push(store, "app", "index", tag="v1", children=(d1, d2))
    result = collect(store, tmp_path)
    assert result.manifests_deleted == 0  # untagged children of a live index
    assert candidates(store) == (set(), set())  # alive for good: not examined again
    store.delete_tag("app", "v1")
    dry = collect(store, tmp_path, dry_run=True)  # counts the children its rounds free
    assert (dry.manifests_deleted, dry.blobs_deleted) == (3, 2)
    result = collect(store, tmp_path)
    assert (result.manifests_deleted, result.blobs_deleted) == (3, 2)
    assert manifest_ids(store) == set()


def test_a_subject_deleted_frees_its_referrers(store, tmp_path):
    subject, digest = push(store, "app", "image", (sha("i"),), tag="v1")
    referrer, _ = push(store, "app", "signature", (sha("sig"),), subject=digest)
    assert collect(store, tmp_path).manifests_deleted == 0
    assert candidates(store) == (set(), set())
    store.delete_tag("app", "v1")
    dry = collect(store, tmp_path, dry_run=True)
    assert (dry.manifests_deleted, dry.blobs_deleted) == (2, 2)
    assert collect(store, tmp_path).manifests_deleted == 2
    assert manifest_ids(store) == set()


def test_blobs_uploaded_and_never_referenced_and_blobs_a_manifest_let_go(store, tmp_path):
    push(store, "app", "one", (sha("shared"), sha("own1")), tag="one")
    two, _ = push(store, "app", "two", (sha("shared"), sha("own2")), tag="two")
    with store.write() as conn:
        store.record_blob(conn, store.repository_id(conn, "app"), sha("lonely"), 10)
    result = collect(store, tmp_path)
    assert result.blobs_deleted == 1 and sha("lonely") not in blob_digests(store)
    assert candidates(store) == (set(), set())
    assert store.delete_manifest("app", _digest_of(store, two))
    assert candidates(store)[1] == {sha("shared"), sha("own2")}
    assert collect(store, tmp_path).blobs_deleted == 1  # own2; shared is still referenced
    assert blob_digests(store) == {sha("shared"), sha("own1")}
    assert candidates(store) == (set(), set())


def _digest_of(store: MetadataStore, manifest_id: int) -> str:
    with store.read() as conn:
        return conn.execute(sa.select(t.manifests.c.digest)
                            .where(t.manifests.c.id == manifest_id)).scalar_one()


def test_within_the_grace_period_a_candidate_stays_for_a_later_run(store, tmp_path):
    young, _ = push(store, "app", "young", (sha("y"),))
    storage = FilesystemStorage(str(tmp_path / "storage"), fsync=False)
    GarbageCollector(store, storage, grace_seconds=3600).run(delete_untagged=True)
    # its blob is referenced (by it): deleting it records the blob again
    assert candidates(store) == ({young}, set())
    result = collect(store, tmp_path)
    assert (result.manifests_deleted, result.blobs_deleted) == (1, 1)


def test_the_migration_records_the_garbage_already_there(tmp_path):
    store = MetadataStore("sqlite:///" + str(tmp_path / "old.db"))
    upgrade(store, "0013")
    now = time.time() - 86400
    with store.write() as conn:
        conn.execute(t.repositories.insert().values(id=1, name="app", created_at=now))
        conn.execute(t.blobs.insert(), [{"digest": sha(n), "size": 1, "touched_at": now}
                                        for n in ("used", "unused")])
        conn.execute(t.manifests.insert(), [
            {"id": i, "repository_id": 1, "digest": sha(str(i)), "media_type": OCI, "size": 1,
             "payload": b"{}", "created_at": now} for i in (1, 2)])
        conn.execute(t.manifest_blobs.insert().values(manifest_id=1, digest=sha("used")))
        conn.execute(t.manifest_blobs.insert().values(manifest_id=2, digest=sha("used")))
        conn.execute(t.tags.insert().values(repository_id=1, name="v1", manifest_id=1,
                                            updated_at=now))
    upgrade(store)
    assert candidates(store) == ({2}, {sha("unused")})
    result = collect(store, tmp_path)
    assert (result.manifests_deleted, result.blobs_deleted) == (1, 1)
    store.dispose()


def _plan(store: MetadataStore, query: sa.Select) -> str:
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.read() as conn:
        return "\n".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


def test_sqlite_plans_read_the_candidates_and_look_rows_up_by_key(store):
    """The GC's queries walk the candidate tables and reach manifests and blobs by their
    keys: no full scan of manifests or blobs, the tables that grow with the registry."""
    cutoff = time.time()
    m, b = t.manifests, t.blobs
    untagged = sa.select(m.c.id).where(m.c.id.in_(q.manifest_candidates()),
                                       *q._untagged_condition(m, cutoff, keep_since=cutoff))
    plan = _plan(store, untagged)
    assert "SCAN gc_manifest_candidates" in plan
    assert "SCAN manifests" not in plan
    unreferenced = sa.select(b.c.digest).where(
        b.c.digest.in_(sa.select(t.gc_blob_candidates.c.digest)),
        *q._unreferenced(b, cutoff, keep_since=cutoff))
    plan = _plan(store, unreferenced)
    assert "SCAN gc_blob_candidates" in plan
    assert "SCAN blobs" not in plan
