"""No stale read in a cluster (3 instances, PostgreSQL, SeaweedFS): a tag moved or
deleted, a manifest deleted by digest, a blob unlinked through one instance is read
back at once through every instance (tests/api/read_consistency.py)."""

from __future__ import annotations

from tests.api.read_consistency import check_reads_follow_writes


def test_reads_follow_writes_across_instances(cluster) -> None:
    check_reads_follow_writes([inst.url for inst in cluster.instances], "consistency/app")
