"""The UI reads an image config with a limit of its own, whatever a manifest declares.

Manifests stored before the registry checked descriptor sizes (or imported from
elsewhere) may say a config is small when the blob is large: the page must not
read the blob whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ociregistry.config import load_settings
from ociregistry.core import browse
from ociregistry.core.browse import BrowseService
from ociregistry.runtime import Runtime, build_runtime
from ociregistry.storage.base import BlobStorage

REPO = "team/app"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class CountingStorage:
    """The runtime's storage, counting the blob bytes handed out."""

    def __init__(self, inner: BlobStorage) -> None:
        self.inner = inner
        self.bytes_read = 0

    def _count(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.bytes_read += len(chunk)
            yield chunk

    def open_blob(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return self._count(self.inner.open_blob(digest, chunk_size))

    def read_blob_range(
        self, digest: str, start: int, length: int, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        return self._count(self.inner.read_blob_range(digest, start, length, chunk_size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "data")})
    rt = build_runtime(settings, migrate=True)
    yield rt
    rt.registry.db.dispose()


def _store_unchecked(rt: Runtime, config: bytes, declared: int) -> str:
    """Push the config blob, then store a manifest that lies about its size the way
    an old index could hold it (straight into the index, past today's checks)."""
    digest, _ = rt.registry.uploads.monolithic(REPO, sha256(config), [config])
    payload = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
        "config": {"mediaType": OCI_CONFIG, "digest": digest, "size": declared},
    }).encode()
    db = rt.registry.db
    with db.write() as conn:
        repo_id = db.ensure_repository(conn, REPO)
        db.insert_manifest(conn, repo_id, sha256(payload), OCI_MANIFEST, payload,
                           None, OCI_CONFIG, None, [digest], [])
    return sha256(payload)


def test_a_config_declared_small_but_stored_large_is_not_read(runtime):
    big = json.dumps({"os": "linux", "pad": "x" * (browse.MAX_CONFIG_BYTES + 1000)}).encode()
    manifest = _store_unchecked(runtime, big, declared=100)
    storage = CountingStorage(runtime.storage)
    view = BrowseService(runtime.registry, storage).manifest(REPO, manifest)  # type: ignore[arg-type]
    assert storage.bytes_read <= browse.MAX_CONFIG_BYTES
    assert view.config is None
    assert view.config_note and "too large" in view.config_note


def test_a_config_declared_large_but_stored_small_is_shown(runtime):
    config = json.dumps({"os": "linux", "architecture": "arm64"}).encode()
    manifest = _store_unchecked(runtime, config, declared=10 * browse.MAX_CONFIG_BYTES)
    storage = CountingStorage(runtime.storage)
    view = BrowseService(runtime.registry, storage).manifest(REPO, manifest)  # type: ignore[arg-type]
    # What the registry holds decides, not what the manifest says.
    assert view.config is not None and view.config.platform == "linux/arm64"
    assert storage.bytes_read == len(config)


def test_a_config_blob_longer_on_disk_than_in_the_index_is_cut_at_the_index_size(runtime):
    config = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
    manifest = _store_unchecked(runtime, config, declared=len(config))
    path = runtime.storage.blob_path(sha256(config))
    assert path is not None
    with open(path, "ab") as f:  # a damaged store: more bytes than were pushed
        f.write(b" " * (2 * browse.MAX_CONFIG_BYTES))
    storage = CountingStorage(runtime.storage)
    view = BrowseService(runtime.registry, storage).manifest(REPO, manifest)  # type: ignore[arg-type]
    assert storage.bytes_read == len(config)
    assert view.config is not None and view.config.platform == "linux/amd64"
