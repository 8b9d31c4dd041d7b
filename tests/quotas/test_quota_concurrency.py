"""Quota accounting under concurrency on one registry (2 gunicorn workers, SQLite):
8 clients, two namespaces, GC running; see concurrency.py. The cluster runs the
same race in tests/cluster/test_cluster_quotas.py."""

from __future__ import annotations

from tests.quotas import concurrency
from tests.server import RegistryProcess


def test_eight_clients_two_namespaces_with_gc_usage_exact_and_never_over(tmp_path):
    server = RegistryProcess(tmp_path / "data", workers=2,
                             env={"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0"}).start()
    try:
        outcome = concurrency.run_race([server.url], server.url, server)
    finally:
        server.stop()
    concurrency.check(outcome)
