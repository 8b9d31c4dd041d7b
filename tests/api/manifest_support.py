"""Helpers shared by the manifest API tests."""

from __future__ import annotations

import json
import os
from typing import Any

import requests

from tests.helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
    push_blob,
    put_manifest,
    sha256,
)


def _url(registry, repo: str, ref: str) -> str:
    return f"{registry.url}/v2/{repo}/manifests/{ref}"


def _get(registry, repo: str, ref: str, accept: str | None = None) -> requests.Response:
    headers = {"Accept": accept} if accept else {
        "Accept": ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
                             DOCKER_SCHEMA1_SIGNED, DOCKER_SCHEMA1])
    }
    return requests.get(_url(registry, repo, ref), headers=headers)


def _push(registry, repo: str, ref: str, body: bytes, media_type: str, **kw: Any) -> str:
    r = put_manifest(registry.url, repo, ref, body, media_type, **kw)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def _tags(registry, repo: str) -> list[str]:
    r = requests.get(f"{registry.url}/v2/{repo}/tags/list")
    assert r.status_code == 200, r.text
    return r.json()["tags"]


def _assert_pullable(registry, repo: str, ref: str, body: bytes, media_type: str) -> None:
    for reference in (ref, sha256(body)):
        r = _get(registry, repo, reference)
        assert r.status_code == 200, r.text
        assert r.content == body
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == sha256(body)


def _docker_image(registry, repo: str) -> dict[str, Any]:
    config = json.dumps({"architecture": "arm64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(2048)
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                   "digest": push_blob(registry.url, repo, config)},
        "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer),
                    "digest": push_blob(registry.url, repo, layer)}],
    }
