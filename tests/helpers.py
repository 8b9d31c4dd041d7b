"""Small HTTP helpers for API tests."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(url: str, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    return digest


def make_image(url: str, repo: str, layers: int = 2, extra: dict | None = None) -> dict[str, Any]:
    """Push a config and random layers; return the (unpushed) manifest dict."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    config_bytes = config.encode()
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": push_blob(url, repo, config_bytes),
            "size": len(config_bytes),
        },
        "layers": [],
    }
    for _ in range(layers):
        data = os.urandom(1024)
        manifest["layers"].append(
            {"mediaType": OCI_LAYER, "digest": push_blob(url, repo, data), "size": len(data)}
        )
    manifest.update(extra or {})
    return manifest


def put_manifest(
    url: str, repo: str, ref: str, manifest: dict | bytes, media_type: str = OCI_MANIFEST,
    **kwargs: Any,
) -> requests.Response:
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return requests.put(
        f"{url}/v2/{repo}/manifests/{ref}",
        data=body,
        headers={"Content-Type": media_type},
        **kwargs,
    )


def assert_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    if response.request.method != "HEAD":
        codes = [e["code"] for e in response.json()["errors"]]
        assert code in codes, response.text
