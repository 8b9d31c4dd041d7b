"""The outbox: an event is written if and only if its transaction commits, last, with
who did it; the registry's own changes (mount, GC) and other capabilities emit alike."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa

from ociregistry.config import Settings
from ociregistry.core.actor import Actor, acting_as
from ociregistry.metadata import schema as t
from ociregistry.runtime import build_runtime


@pytest.fixture
def runtime(tmp_path):
    rt = build_runtime(Settings(data_dir=str(tmp_path), gc={"grace_period_seconds": 0}),
                       migrate=True)
    yield rt
    rt.metadata.dispose()


def events(runtime) -> list[dict]:
    with runtime.metadata.read() as conn:
        rows = conn.execute(sa.select(t.events).order_by(t.events.c.id)).all()
    return [{"action": r.action, "repository": r.repository, "digest": r.digest,
             **json.loads(r.body)} for r in rows]


def test_an_event_is_written_only_when_its_transaction_commits(runtime):
    store = runtime.metadata
    with pytest.raises(RuntimeError), store.write() as conn:
        store.events.emit(conn, "quota.warning", repository="a/b", used=95)
        raise RuntimeError("rolled back")
    assert events(runtime) == []
    with acting_as(Actor("user", "alice", "10.0.0.1", "req-1")), store.write() as conn:
        store.events.emit(conn, "quota.warning", repository="a/b", used=95)
    [event] = events(runtime)
    assert event["action"] == "quota.warning" and event["repository"] == "a/b"
    assert event["details"] == {"used": 95}
    assert event["actor"] == {"kind": "user", "name": "alice", "address": "10.0.0.1"}
    assert event["request_id"] == "req-1" and event["instance"]
    # A later transaction on the same pooled connection does not see the old pending list.
    with store.write() as conn:
        pass
    assert len(events(runtime)) == 1


def test_mounts_and_garbage_collection_are_events(runtime):
    registry = runtime.registry
    data = b"layer bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    registry.uploads.monolithic("src/repo", digest, [data])
    assert registry.uploads.mount("dst/repo", digest, "src/repo") == len(data)
    mounted = [e for e in events(runtime) if e["action"] == "blob.mounted"]
    assert mounted[0]["repository"] == "dst/repo" and mounted[0]["digest"] == digest
    assert mounted[0]["details"] == {"from_repository": "src/repo"}
    assert [e["repository"] for e in events(runtime) if e["action"] == "repository.created"
            ] == ["src/repo", "dst/repo"]
    registry.delete_blob("src/repo", digest)
    registry.delete_blob("dst/repo", digest)
    result = runtime.gc.run()
    [finished] = [e for e in events(runtime) if e["action"] == "gc.finished"]
    assert finished["actor"]["kind"] == "system"
    assert finished["details"]["blobs_deleted"] == result.blobs_deleted == 1
    assert finished["details"]["bytes_freed"] == len(data)


def test_with_events_disabled_nothing_is_written(tmp_path):
    rt = build_runtime(Settings(data_dir=str(tmp_path), events={"enabled": False}),
                       migrate=True)
    try:
        with rt.metadata.write() as conn:
            rt.metadata.events.emit(conn, "manifest.pushed", repository="x")
            rt.metadata.ensure_repository(conn, "x")
        assert events(rt) == []
    finally:
        rt.metadata.dispose()


def test_pruning_drops_old_events_their_log_and_their_redeliveries(runtime):
    from ociregistry.metadata import event_queries as q

    store = runtime.metadata
    with store.write() as conn:
        store.events.emit(conn, "quota.warning", repository="a/b")
    assert q.insert_endpoint(store, "hook", "api", json.dumps({"url": "http://x/"}),
                             "whsec_x", True)
    endpoint = q.endpoint_row(store, "hook")
    [event] = q.list_events(store, 10, None, None, None)
    assert endpoint.cursor == event.id  # a new endpoint starts after the newest event
    assert q.redeliver_one(store, endpoint.id, event.uid)
    assert q.claimable(store, 1e12) == [endpoint.id]
    assert q.prune(store, before=1e12) == (1, 0)
    assert q.list_events(store, 10, None, None, None) == []
    assert q.claimable(store, 1e12) == []


def test_pulls_are_batched_per_manifest_and_caller_and_sampled(runtime, tmp_path):
    from ociregistry.events.pulls import PullBuffer

    store = runtime.metadata
    buffer = PullBuffer(store, batch_seconds=3600, sample_rate=1.0)
    alice = Actor("user", "alice", "10.0.0.1", "r1")
    with acting_as(alice):
        for _ in range(3):
            buffer.record("a/b", "latest", "sha256:" + "1" * 64, "application/json", 10)
    with acting_as(Actor("anonymous", None, "10.0.0.2", "r2")):
        buffer.record("a/b", "latest", "sha256:" + "1" * 64, "application/json", 10)
    assert events(runtime) == []  # nothing written on the request
    assert buffer.flush() == 2
    pulls = events(runtime)
    assert [(p["actor"]["kind"], p["details"]["count"]) for p in pulls] == [
        ("user", 3), ("anonymous", 1)]
    assert pulls[0]["tags"] == ["latest"] and pulls[0]["actor"]["name"] == "alice"
    never = PullBuffer(store, batch_seconds=0, sample_rate=0.0)
    never.record("a/b", "latest", "sha256:" + "1" * 64, "application/json", 10)
    assert never.flush() == 0
