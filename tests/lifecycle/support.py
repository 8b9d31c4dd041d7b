"""Helpers of the lifecycle tests: a registry with pull statistics flushed fast and no
GC grace period, images with labels, polling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, push_blob, put_manifest, sha256
from tests.server import RegistryProcess

T = TypeVar("T")
LIFECYCLE_ENV = {
    "OCIREGISTRY_PULL_STATS__FLUSH_INTERVAL_SECONDS": "0.2",
    "OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0",
    "OCIREGISTRY_RETENTION__ENABLED": "false",  # runs on demand only, unless a test says
}


def lifecycle_registry(data_dir: Path, env: dict[str, str] | None = None,
                       workers: int = 2) -> RegistryProcess:
    return RegistryProcess(data_dir, workers=workers, env={**LIFECYCLE_ENV, **(env or {})})


def push_image(url: str, repo: str, tags: list[str], labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None,
               extra: dict[str, Any] | None = None) -> str:
    """Push a one-layer image under ``tags`` (none: by digest); its digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Labels": labels or {}},
                         "n": os.urandom(8).hex()}).encode()
    layer = os.urandom(256)
    manifest: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": push_blob(url, repo, config),
                   "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(url, repo, layer),
                    "size": len(layer)}],
        **({"annotations": annotations} if annotations else {}),
        **(extra or {}),
    }
    body = json.dumps(manifest).encode()
    digest = sha256(body)
    for ref in tags or [digest]:
        r = put_manifest(url, repo, ref, body)
        assert r.status_code == 201, r.text
    return digest


def wait_for(probe: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    """Poll until ``probe`` returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(0.1)


def tags_listing(url: str, repo: str, **params: str) -> list[dict[str, Any]]:
    r = requests.get(f"{url}/api/v1/repositories/{repo}/tags", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def cli(server: RegistryProcess, *args: str,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m ociregistry ...` on a server's data (and its database, when it has one
    of its own: REGISTRY_TEST_DATABASE_URL)."""
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args, "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, **LIFECYCLE_ENV, **server.env, **(env or {})})
