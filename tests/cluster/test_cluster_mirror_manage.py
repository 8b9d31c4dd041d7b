"""The mirror's management on the cluster (three instances, PostgreSQL + S3 behind
nginx; no authentication, so admin operations go to the instances directly: the
registry allows them only from its own host): evictions asked of every instance at
once never overlap and delete each tag once, the GC (on any instance) then frees the
blobs from the shared store; a pre-fetch run started on one instance is followed on
the others."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import sqlalchemy as sa

from tests.helpers import OCI_MANIFEST
from tests.lifecycle.support import push_image, wait_for
from tests.server import RegistryProcess

DAY = 86400.0
TIMEOUT = 300


def _settings(upstream_url: str, repo: str) -> dict[str, Any]:
    return {"gc": {"grace_period_seconds": 0}, "tags": {"restore_window_seconds": 0},
            "pull_stats": {"flush_interval_seconds": 0.2},
            "mirror": {"upstreams": [{"name": "up", "url": upstream_url,
                                      "evict_unused_after": "7d",
                                      "prefetch": [{"repository": repo, "tags": "v*"}]}]}}


def _sql(cluster: Any, sql: str, **params: Any) -> list[tuple]:
    engine = sa.create_engine(cluster.database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


def _layers(upstream: RegistryProcess, repo: str, tag: str) -> list[str]:
    body = requests.get(f"{upstream.url}/v2/{repo}/manifests/{tag}",
                        headers={"Accept": OCI_MANIFEST}, timeout=30).json()
    return [body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]


def test_evictions_on_every_instance_at_once_delete_each_tag_once_then_gc_frees(
        make_cluster, tmp_path):
    (tmp_path / "up").mkdir()
    upstream = RegistryProcess(tmp_path / "up" / "data", workers=1).start()
    try:
        repo = f"team/evict{uuid.uuid4().hex[:8]}"
        tags = ["a", "b", "c"]
        for tag in tags:
            push_image(upstream.url, repo, [tag])
        cluster = make_cluster(settings=_settings(upstream.url, f"{repo}-none"))
        for i, tag in enumerate(tags):  # each through another instance
            url = cluster.instances[i].url
            r = requests.get(f"{url}/v2/up/{repo}/manifests/{tag}",
                             headers={"Accept": OCI_MANIFEST}, timeout=TIMEOUT)
            assert r.status_code == 200, r.text
            for digest in _layers(upstream, repo, tag):
                assert requests.get(f"{url}/v2/up/{repo}/blobs/{digest}",
                                    timeout=TIMEOUT).status_code == 200
        local = f"up/{repo}"
        wait_for(lambda: len(_sql(cluster, "SELECT tp.name FROM tag_pulls tp JOIN repositories"
                                  " r ON r.id = tp.repository_id WHERE r.name = :n",
                                  n=local)) == 3, what="pull stats of every instance")
        digests = [d for tag in tags for d in _layers(upstream, repo, tag)]
        wait_for(lambda: _sql(cluster, "SELECT count(*) FROM blobs WHERE digest = ANY(:d)",
                              d=list(digests))[0][0] == len(digests), what="fills")
        rid = _sql(cluster, "SELECT id FROM repositories WHERE name = :n", n=local)[0][0]
        for statement in (
                "UPDATE tags SET updated_at = updated_at - :s WHERE repository_id = :r",
                "UPDATE tag_pulls SET last_pulled_at = last_pulled_at - :s "
                "WHERE repository_id = :r",
                "UPDATE manifest_pulls SET last_pulled_at = last_pulled_at - :s WHERE "
                "manifest_id IN (SELECT id FROM manifests WHERE repository_id = :r)",
                "UPDATE manifests SET created_at = created_at - :s WHERE repository_id = :r"):
            _sql(cluster, statement, s=30 * DAY, r=rid)

        def evict(instance: Any) -> tuple[int, int]:
            r = requests.post(f"{instance.url}/api/v1/mirror/upstreams/up/evict",
                              params={"dry_run": "false"}, timeout=TIMEOUT)
            return r.status_code, (r.json().get("tags", 0) if r.status_code == 200 else 0)

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(evict, cluster.instances * 2))
        statuses = {status for status, _ in results}
        assert statuses <= {200, 409} and 200 in statuses, results
        assert sum(n for _, n in results) == 3, results  # each tag deleted once
        state = requests.get(f"{cluster.instances[1].url}/api/v1/mirror/repositories/{local}",
                             timeout=60).json()
        assert state.get("tags") == [], state

        r = requests.post(f"{cluster.instances[2].url}/api/v1/admin/gc",
                          json={"dry_run": False}, timeout=60)
        assert r.status_code == 202, r.text
        wait_for(lambda: _sql(cluster, "SELECT count(*) FROM blobs WHERE digest = ANY(:d)",
                              d=list(digests))[0][0] == 0, timeout=TIMEOUT,
                 what="GC to free the evicted blobs")
    finally:
        upstream.stop()


def test_a_prefetch_run_started_on_one_instance_is_followed_on_any(make_cluster, tmp_path):
    (tmp_path / "up").mkdir()
    upstream = RegistryProcess(tmp_path / "up" / "data", workers=1).start()
    try:
        repo = f"team/warm{uuid.uuid4().hex[:8]}"
        for tag in ("v1", "v2", "latest"):
            push_image(upstream.url, repo, [tag])
        cluster = make_cluster(settings=_settings(upstream.url, repo))
        r = requests.post(f"{cluster.instances[0].url}/api/v1/mirror/upstreams/up/sync",
                          timeout=60)
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]

        def finished() -> dict | None:
            for instance in cluster.instances[1:]:
                run = requests.get(f"{instance.url}/api/v1/mirror/syncs/{run_id}",
                                   timeout=60).json()
                if run["status"] == "running":
                    return None
            return run

        run = wait_for(finished, timeout=TIMEOUT, what="the pre-fetch run")
        assert run["status"] == "done" and run["tags_done"] == 2, run
        state = requests.get(f"{cluster.instances[2].url}/api/v1/mirror/repositories/up/{repo}",
                             timeout=60).json()
        assert {t["name"]: t["state"] for t in state["tags"]} == {"v1": "fresh", "v2": "fresh"}
        upstream_view = requests.get(f"{cluster.instances[1].url}/api/v1/mirror/upstreams/up",
                                     timeout=60).json()
        assert upstream_view["last_sync"]["id"] == run_id
        assert upstream_view["cache"]["tags"] == 2
    finally:
        upstream.stop()
