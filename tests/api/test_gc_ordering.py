"""GC ordering on the embedded default (SQLite + files): a blob's row goes in a
transaction that commits first, its bytes after, under the digest's lock.

- a GC whose commit fails (a real SQLite error at COMMIT) leaves every blob
  that HEAD reports readable in full;
- an upload of the same digest that lands between the commit and the byte
  deletion keeps its bytes (the deletion re-checks under the lock).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ociregistry.metadata import gc_queries
from ociregistry.metadata.store import MetadataStore
from ociregistry.storage.filesystem import FilesystemStorage
from tests.api.gc_ordering import blob_is_whole_or_unknown, commit_failure_scenario
from tests.helpers import push_blob
from tests.server import RegistryProcess

NO_GRACE = {"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryProcess]:
    proc = RegistryProcess(tmp_path / "data", env=NO_GRACE).start()
    yield proc
    proc.stop()


def database_url(server: RegistryProcess) -> str:
    return server.env.get(
        "OCIREGISTRY_DATABASE__URL", f"sqlite:///{server.data_dir / 'registry.db'}"
    )


def cli_gc(server: RegistryProcess) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", "gc", "--data-dir", str(server.data_dir)],
        env={**os.environ, **server.env}, cwd=str(server.data_dir.parent),
        capture_output=True, text=True, timeout=300,
    )


def test_a_gc_whose_commit_fails_leaves_no_blob_without_bytes(server):
    failed = commit_failure_scenario(server.url, database_url(server), lambda: cli_gc(server))
    assert failed.returncode != 0
    assert "FOREIGN KEY" in failed.stderr.upper(), failed.stderr[-2000:]


def test_an_upload_between_the_commit_and_the_byte_deletion_keeps_its_bytes(server):
    data = os.urandom(4000)
    digest = push_blob(server.url, "gc/between", data)
    store = MetadataStore(database_url(server))
    storage = FilesystemStorage(str(server.data_dir))
    try:
        # the sweep's first step: the row goes, and that commits
        assert gc_queries.delete_blob_if_unreferenced(store, digest, time.time() + 1)
        assert requests.head(f"{server.url}/v2/gc/between/blobs/{digest}").status_code == 404
        # a client pushes the same blob again before the sweep reaches the bytes
        push_blob(server.url, "gc/between", data)
        # the second step re-checks under the digest's lock and leaves them
        assert not gc_queries.remove_unrecorded_bytes(store, digest, storage.delete_blob)
    finally:
        store.dispose()
    assert blob_is_whole_or_unknown(server.url, "gc/between", digest, len(data)) is None
    assert requests.head(f"{server.url}/v2/gc/between/blobs/{digest}").status_code == 200
