"""Retention runs on a real SQLite index (no server): the re-checks that make a real run
delete only what is still as planned, the lock, and the deletion hook (events) that
commits with each deletion or not at all."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ociregistry.config import RetentionSettings
from ociregistry.lifecycle.policy import RetentionPolicy
from ociregistry.lifecycle.retention import RetentionRunning, RetentionService, RunResult
from ociregistry.metadata import pull_stats_queries as pq
from ociregistry.metadata import retention_queries as rq
from ociregistry.metadata import schema as t
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage

POLICY = RetentionPolicy(name="p", keep=[{"latest_pushed": 1}])
DAY = 86400.0


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


@pytest.fixture
def service(tmp_path: Path) -> Any:
    store = MetadataStore(f"sqlite:///{tmp_path}/registry.db")
    store.create_schema()
    now = time.time()
    with store.write() as conn:
        conn.execute(t.repositories.insert().values(id=1, name="ci/app", created_at=0))
        for n in (1, 2, 3):
            conn.execute(t.manifests.insert().values(
                id=n, repository_id=1, digest=digest(n), media_type="x", size=2,
                payload=b"{}", created_at=now - 10 * DAY))
            conn.execute(t.tags.insert().values(repository_id=1, name=f"t{n}", manifest_id=n,
                                                updated_at=now - (10 - n) * DAY))
    service = RetentionService(store, FilesystemStorage(str(tmp_path)),
                               RetentionSettings(policies=[POLICY], label_expiry=False), grace=0)
    yield service
    store.dispose()


def _tags(store: MetadataStore) -> list[str]:
    with store.read() as conn:
        return sorted(conn.execute(sa.select(t.tags.c.name)).scalars())


def test_a_real_run_skips_what_changed_since_the_plan(service: Any) -> None:
    store = service.db
    planned = service.plan(POLICY)
    assert [d.tag for d in planned] == ["t1", "t2"]
    # Between plan and deletion: t1 pushed again, t2 pulled.
    with store.write() as conn:
        store.set_tag(conn, 1, "t1", 1)
    pq.flush(store, {("ci/app", "t2"): (1, time.time())}, {})
    run_id = rq.start_run(store, "p", False, "cli", "test")
    result = RunResult(run_id, "p", False, planned=planned)
    service._execute(result, lambda: True)
    assert result.deleted == [] and [d.tag for d in result.skipped] == ["t1", "t2"]
    assert _tags(store) == ["t1", "t2", "t3"]


def test_the_hook_commits_with_each_deletion_or_not_at_all(service: Any) -> None:
    store = service.db
    seen: list[tuple[str, str | None]] = []

    def hook(conn: Any, deletion: Any) -> None:
        # Inside the deletion's transaction: the tag is already gone there.
        gone = conn.execute(sa.select(t.tags.c.name).where(t.tags.c.name == deletion.tag))
        assert gone.first() is None
        seen.append((deletion.kind, deletion.tag))
        if deletion.tag == "t2":
            raise RuntimeError("the outbox is full")

    service.on_delete = hook
    with pytest.raises(RuntimeError):
        service.run("p", dry_run=False)
    assert seen == [("tag", "t1"), ("tag", "t2")]
    # One transaction held both: neither tag, audit row nor event survives the failure.
    assert _tags(store) == ["t1", "t2", "t3"]
    [run] = service.runs("p")
    assert run["status"] == "failed" and run["tags_deleted"] == 0
    assert "outbox" in run["error"]
    assert service.run_record(run["id"])["deletions"] == []

    seen.clear()
    service.on_delete = lambda conn, d: seen.append((d.kind, d.tag))
    [result] = service.run("p", dry_run=False)
    assert seen == [("tag", "t1"), ("tag", "t2")] and _tags(store) == ["t3"]
    assert len(service.run_record(result.run_id)["deletions"]) == 2


def test_a_second_real_run_of_a_policy_is_refused_while_one_runs(service: Any) -> None:
    store = service.db
    assert store.try_lock("retention:p", "someone-else", ttl=60)
    with pytest.raises(RetentionRunning):
        service.run("p", dry_run=False)
    assert [r.dry_run for r in service.run("p", dry_run=True)] == [True]  # dry runs: no lock
    store.unlock("retention:p", "someone-else")
    [result] = service.run("p", dry_run=False)
    assert [d.tag for d in result.deleted] == ["t1", "t2"]
    assert _tags(store) == ["t3"]


def test_policies_run_in_order_each_seeing_the_last(service: Any) -> None:
    second = RetentionPolicy(name="q", keep=[{"latest_pushed": 2}])
    service.settings = RetentionSettings(policies=[second, POLICY], label_expiry=False)
    results = service.run(None, dry_run=True)
    # q plans t1; p, seeing t1 gone, plans t2 only: no tag twice in one run of all.
    assert [[d.tag for d in r.planned] for r in results] == [["t1"], ["t2"]]


def test_config_labels_are_read_once_and_a_few_per_run(service: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import json

    from ociregistry.lifecycle import retention
    from ociregistry.lifecycle.plan import LABEL_EXPIRY

    store = service.db
    with store.write() as conn:
        for n in (1, 2, 3):
            config = json.dumps({"config": {"Labels": {"quay.expires-after": "1d"}},
                                 "n": n}).encode()
            hexdigest = hashlib.sha256(config).hexdigest()
            path = tmp_path / "blobs" / "sha256" / hexdigest[:2] / hexdigest
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(config)
            payload = json.dumps({"schemaVersion": 2, "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{hexdigest}", "size": len(config)}, "layers": []})
            conn.execute(t.manifests.update().where(t.manifests.c.id == n).values(
                payload=payload.encode(),
                media_type="application/vnd.oci.image.manifest.v1+json"))
    service.settings = RetentionSettings(label_expiry=True)
    monkeypatch.setattr(retention, "SCAN_PER_RUN", 2)
    expiry = service.policy(LABEL_EXPIRY).policy
    first = service.plan(expiry)
    assert sorted(d.tag for d in first) == ["t1", "t2"]  # t3's config not read yet
    assert sorted(d.tag for d in service.plan(expiry)) == ["t1", "t2", "t3"]
    with store.read() as conn:
        read = conn.execute(sa.select(t.manifest_label_expiry.c.seconds)).scalars().all()
    assert read == [DAY, DAY, DAY]
