"""The pull buffer and its flush (lifecycle/pull_stats.py) on a real SQLite index, and
the scheduler's notion of a due policy (lifecycle/schedule.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from ociregistry.config import RetentionSettings
from ociregistry.lifecycle.policy import RetentionPolicy
from ociregistry.lifecycle.pull_stats import PullRecorder
from ociregistry.lifecycle.retention import RetentionService
from ociregistry.lifecycle.schedule import due_policies, last_firing
from ociregistry.metadata import pull_stats_queries as q
from ociregistry.metadata import retention_queries as rq
from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage

DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    store = MetadataStore(f"sqlite:///{tmp_path}/registry.db")
    store.create_schema()
    with store.write() as conn:
        conn.execute(t.repositories.insert().values(id=1, name="team/app", created_at=0))
        conn.execute(t.manifests.insert().values(
            id=1, repository_id=1, digest=DIGEST, media_type="x", size=2, payload=b"{}",
            created_at=0))
        conn.execute(t.tags.insert().values(repository_id=1, name="v1", manifest_id=1,
                                            updated_at=0))
    yield store
    store.dispose()


def test_flushes_add_counts_and_keep_the_latest_time(store: MetadataStore) -> None:
    recorder = PullRecorder(store, interval=3600)
    for _ in range(3):
        recorder.record("team/app", "v1", DIGEST)
    recorder.record("team/app", None, DIGEST)
    assert recorder.flush() == 2
    first = q.tag_pulls(store, 1, ["v1"])["v1"]
    assert first[0] == 3
    # An older time from another worker's buffer never moves "last pulled" back.
    q.flush(store, {("team/app", "v1"): (2, first[1] - 100)}, {})
    assert q.tag_pulls(store, 1, ["v1"])["v1"] == (5, first[1])
    assert q.manifest_pulls(store, [1])[1][0] == 4
    assert recorder.flush() == 0  # nothing new
    recorder.close()


def test_pulls_of_what_is_gone_are_dropped_not_failed(store: MetadataStore) -> None:
    recorder = PullRecorder(store, interval=3600)
    recorder.record("team/app", "deleted-tag", "sha256:" + "b" * 64)
    recorder.record("no/such", "v1", DIGEST)
    assert recorder.flush() == 4
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.tag_pulls)).scalar() == 0
    recorder.close()


def test_a_failed_flush_keeps_its_counts(store: MetadataStore, tmp_path: Path) -> None:
    recorder = PullRecorder(store, interval=3600)
    recorder.record("team/app", "v1", DIGEST)
    good = recorder.store
    recorder.store = MetadataStore(f"sqlite:///{tmp_path}/missing/empty.db")  # no tables
    assert recorder.flush() == 0
    recorder.store = good
    assert recorder.flush() == 2
    assert q.tag_pulls(store, 1, ["v1"])["v1"][0] == 1
    recorder.close()


def test_statistics_go_with_their_tag(store: MetadataStore) -> None:
    q.flush(store, {("team/app", "v1"): (1, 5.0)}, {("team/app", DIGEST): (1, 5.0)})
    assert store.delete_tag("team/app", "v1")
    assert q.tag_pulls(store, 1, ["v1"]) == {}
    assert store.delete_manifest("team/app", DIGEST)
    assert q.manifest_pulls(store, [1]) == {}


def test_a_policy_is_due_once_per_firing_after_the_start(store: MetadataStore,
                                                         tmp_path: Path) -> None:
    policy = RetentionPolicy(name="nightly", schedule="0 3 * * *",
                             keep=[{"always": True}])
    service = RetentionService(store, FilesystemStorage(str(tmp_path)),
                               RetentionSettings(policies=[policy], label_expiry=False),
                               grace=0)
    day = 86400 * 20000  # a midnight, UTC
    fired = day + 3 * 3600
    assert last_firing("0 3 * * *", fired + 60) == fired
    # Started after the firing: not caught up.
    assert due_policies(service, fired + 60, since=fired + 30) == []
    # Started before: due, until a real run is recorded after the firing.
    assert [p.name for p, _ in due_policies(service, fired + 60, since=day)] == ["nightly"]
    run = rq.start_run(store, "nightly", False, "schedule", "scheduler")
    with store.write() as conn:
        conn.execute(t.retention_runs.update().values(started_at=fired + 1))
    assert due_policies(service, fired + 60, since=day) == []
    assert run > 0
