"""Retention and pull statistics in a cluster (three instances, PostgreSQL, S3, nginx):
real runs of one policy asked of every instance at once never overlap and delete
each tag once; a schedule on every worker runs once per firing; pull counts from
every instance add up."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import sqlalchemy as sa

from tests.helpers import OCI_MANIFEST
from tests.lifecycle.support import push_image, wait_for

POLICY = {"name": "ci", "repositories": ["ci/**"], "keep": [{"latest_pushed": 2}]}
SETTINGS = {
    "gc": {"grace_period_seconds": 0},
    "pull_stats": {"flush_interval_seconds": 0.2},
    "retention": {"check_interval_seconds": 1, "label_expiry": False, "policies": [
        POLICY, {**POLICY, "name": "ci-scheduled", "repositories": ["sched/**"],
                 "schedule": "* * * * *"}]},
}
TIMEOUT = 300


def _rows(cluster: Any, sql: str) -> list[tuple]:
    engine = sa.create_engine(cluster.database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def _tags(url: str, repo: str) -> list[str]:
    return requests.get(f"{url}/v2/{repo}/tags/list", timeout=30).json()["tags"] or []


def _push(url: str, repo: str, count: int) -> None:
    for i in range(count):
        push_image(url, repo, [f"t{i:02d}"])
        time.sleep(0.01)  # distinct push times


def test_one_policy_never_runs_twice_at_once_and_deletes_each_tag_once(make_cluster):
    cluster = make_cluster(settings=SETTINGS)
    _push(cluster.url, "ci/app", 12)

    def run(instance: Any) -> int:
        r = requests.post(f"{instance.url}/api/v1/retention/runs", timeout=TIMEOUT,
                          json={"policy": "ci", "dry_run": False})
        return r.status_code

    with ThreadPoolExecutor(9) as pool:
        statuses = list(pool.map(run, cluster.instances * 3))
    assert set(statuses) <= {200, 409} and 200 in statuses, statuses

    assert _tags(cluster.url, "ci/app") == ["t10", "t11"]
    runs = _rows(cluster, "SELECT started_at, finished_at, status FROM retention_runs"
                          " WHERE policy = 'ci' AND NOT dry_run ORDER BY started_at")
    assert len(runs) == statuses.count(200)
    assert all(status == "done" for _, _, status in runs)
    for (_, finished, _), (started, _, _) in zip(runs, runs[1:], strict=False):
        assert started >= finished, f"two runs of one policy overlapped: {runs}"
    deleted = _rows(cluster, "SELECT tag FROM retention_deletions ORDER BY tag")
    assert [tag for (tag,) in deleted] == [f"t{i:02d}" for i in range(10)]  # each once


def test_a_schedule_on_every_worker_runs_once_per_firing(make_cluster):
    cluster = make_cluster(settings=SETTINGS)
    _push(cluster.url, "sched/app", 4)
    wait_for(lambda: _tags(cluster.url, "sched/app") == ["t02", "t03"], timeout=TIMEOUT,
             what="the scheduled run")
    _push(cluster.url, "sched/other", 3)
    wait_for(lambda: _tags(cluster.url, "sched/other") == ["t01", "t02"], timeout=TIMEOUT,
             what="the next scheduled run")
    runs = _rows(cluster, "SELECT started_at FROM retention_runs"
                          " WHERE policy = 'ci-scheduled' AND trigger = 'schedule'")
    minutes = [int(started // 60) for (started,) in runs]
    assert len(minutes) == len(set(minutes)), f"more than one run in a firing: {runs}"
    deleted = _rows(cluster, "SELECT repository, tag FROM retention_deletions ORDER BY 1, 2")
    assert deleted == [("sched/app", "t00"), ("sched/app", "t01"), ("sched/other", "t00")]


def test_pull_counts_from_every_instance_add_up(make_cluster):
    cluster = make_cluster(settings=SETTINGS)
    digest = push_image(cluster.url, "team/app", ["v1"])
    for instance in cluster.instances * 2:
        r = requests.get(f"{instance.url}/v2/team/app/manifests/v1", timeout=30,
                         headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200

    def counted() -> bool:
        tags = requests.get(f"{cluster.url}/api/v1/repositories/team/app/tags",
                            timeout=30).json()["items"]
        return tags[0]["pull_count"] == 6

    wait_for(counted, timeout=TIMEOUT, what="six pulls counted")
    detail = requests.get(f"{cluster.url}/api/v1/repositories/team/app/manifests/{digest}",
                          timeout=30).json()
    assert detail["pull_count"] == 6
