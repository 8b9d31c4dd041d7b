"""GC ordering in a cluster (PostgreSQL + S3): a sweep whose commit fails (a real
PostgreSQL error at COMMIT) leaves no blob row without its object, and an upload
landing between the sweep's commit and its delete_object keeps its object.
The scenario is tests/api/gc_ordering.py's, run against the shared database and bucket.
"""

from __future__ import annotations

import os
import time

import requests

from ociregistry.config import S3Settings
from ociregistry.metadata import gc_queries
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.s3 import S3Storage
from tests.api.gc_ordering import blob_is_whole_or_unknown, commit_failure_scenario
from tests.cluster.test_cluster_gc import NO_GRACE, cli_gc
from tests.helpers import push_blob

# the registry streams blobs, so HEAD and GET answer from the same place
SETTINGS = {**NO_GRACE, "storage": {"s3": {"redirect": False}}}


def test_a_gc_whose_commit_fails_leaves_no_blob_without_its_object(make_cluster):
    cluster = make_cluster(settings=SETTINGS)
    failed = commit_failure_scenario(cluster.url, cluster.database_url, lambda: cli_gc(cluster))
    assert failed.returncode != 0
    assert "foreign key" in failed.stderr.lower(), failed.stderr[-2000:]


def test_an_upload_between_the_commit_and_the_delete_keeps_its_object(make_cluster):
    cluster = make_cluster(settings=SETTINGS)
    data = os.urandom(4000)
    digest = push_blob(cluster.url, "gc/between", data)
    store = MetadataStore(cluster.database_url)
    storage = S3Storage(S3Settings(**cluster.settings["storage"]["s3"]))
    try:
        assert gc_queries.delete_blob_if_unreferenced(store, digest, time.time() + 1)
        push_blob(cluster.instances[1].url, "gc/between", data)
        assert not gc_queries.remove_unrecorded_bytes(store, digest, storage.delete_blob)
    finally:
        store.dispose()
    assert blob_is_whole_or_unknown(cluster.url, "gc/between", digest, len(data)) is None
    assert requests.head(f"{cluster.url}/v2/gc/between/blobs/{digest}").status_code == 200
