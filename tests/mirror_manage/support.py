"""Helpers of the mirror management tests: an in-process runtime with upstreams
configured, images stored as the mirror's fill stores them (through the core's
ordinary upload and manifest paths), pulls recorded at chosen times."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ociregistry.config import load_settings
from ociregistry.metadata import pull_stats_queries as pq
from ociregistry.runtime import Runtime, build_runtime
from tests.helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256

DAY = 86400.0
UPSTREAMS = [
    {"name": "hub", "url": "http://127.0.0.1:9", "hosts": ["docker.io"], "default": True,
     "username": "mirror-user", "password": "s3cret-upstream-pw",
     "evict_unused_after": "7d", "pinned": ["library/pinned", "library/alpine:3.*"],
     "prefetch": [{"repository": "library/alpine", "tags": "3.*"}]},
    {"name": "ghcr", "url": "https://ghcr.io", "hosts": ["ghcr.io"], "size_budget": 4096,
     "evict_unused_after": 0},
]


def mirror_runtime(tmp_path: Path, upstreams: list[dict[str, Any]] | None = None,
                   **overrides: Any) -> Runtime:
    settings = load_settings(overrides={
        "data_dir": str(tmp_path / "data"), "gc": {"grace_period_seconds": 0},
        "tags": {"restore_window_seconds": 0},
        "mirror": {"upstreams": upstreams if upstreams is not None else UPSTREAMS},
        **overrides}, environ={})
    return build_runtime(settings, migrate=True)


def store_image(runtime: Runtime, repo: str, tags: list[str], layer_size: int = 1000,
                shared: bytes | None = None) -> str:
    """A one- or two-layer image in ``repo`` under ``tags`` (none: by digest only)."""
    uploads = runtime.registry.uploads
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "n": os.urandom(8).hex()}).encode()
    layers = [os.urandom(layer_size)] + ([shared] if shared is not None else [])
    for blob in [config, *layers]:
        uploads.monolithic(repo, sha256(blob), [blob])
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)}
                   for b in layers]}).encode()
    digest = sha256(body)
    runtime.registry.put_manifest(repo, tags[0] if tags else digest, body, OCI_MANIFEST,
                                  extra_tags=tags[1:])
    return digest


def store_index(runtime: Runtime, repo: str, tag: str, children: list[str]) -> str:
    payloads = []
    for child in children:
        row = runtime.registry.manifest(repo, child)
        payloads.append({"mediaType": OCI_MANIFEST, "digest": child, "size": len(row.payload),
                         "platform": {"os": "linux", "architecture": "amd64"}})
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": payloads}).encode()
    runtime.registry.put_manifest(repo, tag, body, OCI_INDEX)
    return sha256(body)


def pulled(runtime: Runtime, repo: str, tag: str | None, digest: str, at: float) -> None:
    """Record a pull at ``at`` (what the pull-stats buffer writes)."""
    pq.flush(runtime.metadata, {(repo, tag): (1, at)} if tag else {},
             {(repo, digest): (1, at)})
