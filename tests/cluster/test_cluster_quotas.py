"""Quotas on the cluster (three instances, PostgreSQL + S3 behind nginx): usage stays
exact when pushes reach several instances at once and GC runs on another.

The race of tests/quotas/concurrency.py with the clients spread over two instances
and nginx, the collector on the third; then the random walk of
tests/quotas/test_quota_random.py through nginx. Both compare the kept usage with
`ociregistry du --quotas` run against the cluster's database and bucket.
"""

from __future__ import annotations

import os

import requests

from tests.quotas import concurrency
from tests.quotas import support as s
from tests.quotas.test_quota_random import CHECK_EVERY, STEPS, Walk

NO_GRACE = {"gc": {"grace_period_seconds": 0}}


def test_quota_race_across_instances_with_gc(make_cluster):
    cluster = make_cluster(settings=NO_GRACE)
    targets = [cluster.instances[0].url, cluster.instances[1].url, cluster.url]
    outcome = concurrency.run_race(targets, cluster.instances[2].url, cluster)
    concurrency.check(outcome)


def test_random_operations_keep_usage_equal_to_du(make_cluster):
    cluster = make_cluster(settings={"gc": {"grace_period_seconds": 0,
                                            "upload_ttl_seconds": 0}})
    admin = cluster.instances[0].url  # admin operations: the registry host, not nginx
    walk = Walk(cluster.url, seed=7, admin=admin)
    s.create_quota(admin, f"{walk.roomy}/**", 10 << 20)
    s.create_quota(admin, f"{walk.roomy}/two/*", 10 << 20)
    s.create_quota(admin, f"{walk.tight}/**", 24_000, warning=12_000)
    done = []
    for i in range(STEPS):
        done.append(walk.step())
        if i % CHECK_EVERY == CHECK_EVERY - 1:
            walk.check(cluster)
    walk.check(cluster)
    # Whether the walk itself reached the tight limit depends on what GC freed on the
    # way; a refusal is always tried at the end, and must change nothing.
    tight = s.quotas(admin)[f"{walk.tight}/**"]
    data = os.urandom(tight["limit"] - tight["usage"] + 1000)
    r = requests.post(f"{cluster.url}/v2/{walk.tight}/one/blobs/uploads/",
                      params={"digest": s.sha256(data)}, data=data, timeout=s.TIMEOUT)
    assert s.denied(r), (r.status_code, r.text)
    walk.check(cluster)
    assert s.quotas(admin)[f"{walk.tight}/**"]["usage"] == tight["usage"], done
