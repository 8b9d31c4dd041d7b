"""Eviction on a real index and blob store (no server): unused tags and the size budget
go through retention's deletion paths (audit, tag history, events, freshness rows),
pinned content stays, and the ordinary GC then frees the blobs. "Now" is the service's
clock, moved forward; pull times are recorded in the index, never waited for."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ociregistry.metadata import mirror_queries as mq
from ociregistry.metadata import retention_queries as rq
from ociregistry.metadata import schema as t
from ociregistry.mirror.eviction import EvictionRunning, UpstreamNotFound
from tests.mirror_manage.support import DAY, mirror_runtime, pulled, store_image, store_index


@pytest.fixture
def runtime(tmp_path: Path) -> Any:
    runtime = mirror_runtime(tmp_path)
    yield runtime
    runtime.metadata.dispose()


def _tags(runtime: Any, prefix: str = "") -> list[str]:
    r, tg = t.repositories, t.tags
    with runtime.metadata.read() as conn:
        rows = conn.execute(sa.select(r.c.name, tg.c.name)
                            .select_from(tg.join(r, r.c.id == tg.c.repository_id))).all()
    return sorted(f"{repo}:{tag}" for repo, tag in rows if repo.startswith(prefix))


def _blob_files(runtime: Any) -> int:
    root = Path(runtime.settings.storage_root) / "blobs"
    return sum(1 for p in root.rglob("*") if p.is_file())


def test_unused_tags_are_evicted_and_gc_frees_their_blobs(runtime: Any) -> None:
    now = time.time()
    old = store_image(runtime, "hub/library/busybox", ["1.36"])
    recent = store_image(runtime, "hub/library/busybox", ["1.37"])
    store_image(runtime, "local/app", ["v1"])  # not mirrored: never considered
    pulled(runtime, "hub/library/busybox", "1.36", old, now)
    pulled(runtime, "hub/library/busybox", "1.37", recent, now + 6 * DAY)
    mq.record_check(runtime.metadata, "hub/library/busybox", "1.36", "hub", old)
    manage = runtime.mirror_manage
    manage.eviction.clock = lambda: now + 8 * DAY

    dry = manage.evict("hub", dry_run=True)
    assert [(d.kind, d.tag) for d in dry.plan.deletions] == [("tag", "1.36"), ("manifest", None)]
    assert _tags(runtime, "hub/") == ["hub/library/busybox:1.36", "hub/library/busybox:1.37"]

    files_before = _blob_files(runtime)
    result = manage.evict("hub", dry_run=False)
    assert result.summary()["tags"] == 1 and result.summary()["manifests"] == 1
    assert result.plan.bytes_freed > 1000
    assert _tags(runtime) == ["hub/library/busybox:1.37", "local/app:v1"]
    # The freshness row went with the tag: the next pull asks upstream.
    assert mq.freshness(runtime.metadata, "hub/library/busybox", "1.36") is None
    # Audited as a retention run of policy mirror:hub, with the reason.
    record = rq.run(runtime.metadata, result.run_id)
    assert record["policy"] == "mirror:hub" and record["tags_deleted"] == 1
    reasons = [d["rule"] for d in rq.deletions(runtime.metadata, result.run_id, 10)]
    assert all("evict_unused_after 1w" in r for r in reasons)
    # The blobs are unreferenced now: the ordinary GC frees them.
    gc = runtime.gc.run()
    assert gc.blobs_deleted == 2 and gc.bytes_freed > 1000
    assert _blob_files(runtime) == files_before - 2


def test_evictions_emit_events_and_enter_tag_history(runtime: Any) -> None:
    now = time.time()
    store_image(runtime, "hub/library/redis", ["7"])
    runtime.mirror_manage.eviction.clock = lambda: now + 30 * DAY
    runtime.mirror_manage.evict("hub", dry_run=False)
    with runtime.metadata.read() as conn:
        actions = [row.action for row in conn.execute(sa.select(t.events.c.action))]
        history = conn.execute(sa.select(t.tag_history.c.tag)).scalars().all()
    assert "tag.deleted" in actions and "manifest.deleted" in actions
    assert "7" in history


def test_pinned_repositories_and_tags_are_never_evicted(runtime: Any) -> None:
    store_image(runtime, "hub/library/pinned", ["any"])
    store_image(runtime, "hub/library/alpine", ["3.20", "edge"])  # 3.* pinned; edge not
    runtime.mirror_manage.eviction.clock = lambda: time.time() + 365 * DAY
    result = runtime.mirror_manage.evict("hub", dry_run=False)
    assert [d.tag for d in result.deleted] == ["edge"]  # its manifest stays with 3.20
    assert _tags(runtime, "hub/") == ["hub/library/alpine:3.20", "hub/library/pinned:any"]


def test_the_size_budget_evicts_least_recently_pulled_first(runtime: Any) -> None:
    now = time.time()
    images = {}
    for tag in ["a", "b", "c"]:  # ~1.3 KB each; the budget is 4096
        images[tag] = store_image(runtime, "ghcr/org/tool", [tag], layer_size=1200)
    store_image(runtime, "ghcr/org/tool", ["d"], layer_size=1200)
    for tag, day in (("a", 9), ("b", 7), ("c", 8)):  # d: never pulled since its fill
        pulled(runtime, "ghcr/org/tool", tag, images[tag], now + day * DAY)
    runtime.mirror_manage.eviction.clock = lambda: now + 10 * DAY
    usage = runtime.mirror_manage.describe(runtime.settings.mirror.by_name("ghcr"))["cache"]
    assert usage["repositories"] == 1 and usage["tags"] == 4 and usage["bytes"] > 4096
    result = runtime.mirror_manage.evict("ghcr", dry_run=False)
    # d (filled 10 days ago, never pulled) goes first, then b (pulled 3 days ago).
    assert [d.tag for d in result.plan.deletions if d.kind == "tag"] == ["d", "b"]
    assert sorted(d.tag for d in result.deleted if d.kind == "tag") == ["b", "d"]
    assert result.plan.bytes_after <= 4096 < result.plan.bytes_before
    after = runtime.mirror_manage.describe(runtime.settings.mirror.by_name("ghcr"))["cache"]
    assert after["bytes"] == result.plan.bytes_after


def test_an_index_and_its_platforms_go_together(runtime: Any) -> None:
    repo = "hub/library/multi"
    children = [store_image(runtime, repo, []) for _ in range(2)]
    store_index(runtime, repo, "latest", children)
    runtime.mirror_manage.eviction.clock = lambda: time.time() + 30 * DAY
    result = runtime.mirror_manage.evict("hub", dry_run=False)
    assert sorted(d.kind for d in result.deleted) == ["manifest"] * 3 + ["tag"]
    assert result.skipped == []
    with runtime.metadata.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.manifests)).scalar() == 0


def test_a_tag_pulled_between_plan_and_deletion_stays(runtime: Any) -> None:
    now = time.time()
    digest = store_image(runtime, "hub/library/nginx", ["1"])
    manage = runtime.mirror_manage
    manage.eviction.clock = lambda: now + 30 * DAY
    plan = manage.eviction.plan("hub")
    pulled(runtime, "hub/library/nginx", "1", digest, now + 1)
    run_id = rq.start_run(runtime.metadata, "mirror:hub", False, "cli", "test")
    from ociregistry.mirror.eviction import EvictionResult

    result = EvictionResult(run_id, "hub", False, plan)
    manage.eviction._execute(result, lambda: True)
    assert result.deleted == [] and len(result.skipped) == 2
    assert _tags(runtime, "hub/") == ["hub/library/nginx:1"]


def test_one_real_run_per_upstream_and_unknown_upstreams(runtime: Any) -> None:
    assert runtime.metadata.try_lock("mirror-evict:hub", "elsewhere", ttl=60)
    with pytest.raises(EvictionRunning):
        runtime.mirror_manage.evict("hub", dry_run=False)
    assert runtime.mirror_manage.evict("hub", dry_run=True).run_id  # dry runs take no lock
    with pytest.raises(UpstreamNotFound):
        runtime.mirror_manage.evict("nope", dry_run=True)


def test_the_schedule_runs_each_firing_once(runtime: Any) -> None:
    from ociregistry.mirror.schedule import MirrorScheduler, due_runs

    store_image(runtime, "hub/library/old", ["1"])
    manage = runtime.mirror_manage
    manage.eviction.clock = lambda: time.time() + 30 * DAY
    start = time.time() - 7200  # the process "started" two hours ago: a firing since
    scheduler = MirrorScheduler(manage, 60)
    scheduler.started = start
    # hub evicts by age; ghcr has a budget; no pre-fetch schedule anywhere.
    assert sorted(k for k, _u, _f in due_runs(manage, time.time(), start)) == ["evict"] * 2
    results = scheduler.tick()
    assert sorted(r.upstream for r in results) == ["ghcr", "hub"]
    assert _tags(runtime, "hub/") == []
    # A second worker (or instance) finds nothing due for the same firing.
    assert due_runs(manage, time.time(), start) == []
    assert MirrorScheduler(manage, 60).tick() == []
