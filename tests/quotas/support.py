"""Helpers of the quota tests: quotas through /api/v1, usage from `ociregistry du`,
and pushes that report refusals instead of asserting success."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TIMEOUT = 120


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def admin_url(target: Any) -> str:
    """Where admin operations go: without authentication only the registry host may call
    them directly (not through a proxy), so on a cluster one instance, not nginx."""
    return target.instances[0].url if hasattr(target, "instances") else target.url


def create_quota(url: str, namespace: str, limit: int, warning: int | None = None) -> dict:
    r = requests.post(f"{url}/api/v1/quotas", json={"namespace": namespace, "limit": limit,
                                                     "warning": warning}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()


def delete_quota(url: str, quota_id: int) -> None:
    r = requests.delete(f"{url}/api/v1/quotas/{quota_id}", timeout=TIMEOUT)
    assert r.status_code in (204, 404), r.text


def quotas(url: str) -> dict[str, dict]:
    r = requests.get(f"{url}/api/v1/quotas", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return {q["namespace"]: q for q in r.json()["items"]}


def du_quotas(target: Any) -> dict[str, dict]:
    """`ociregistry du --quotas --json` on the registry's own data (or the cluster's
    database and bucket): every quota's usage counted from scratch."""
    if hasattr(target, "instances"):  # a tests/cluster Cluster
        from tests.cluster.s3 import aws_free_environ

        args = ["--config", str(target.config), "--data-dir", str(target.base / "cli-data")]
        env = {**aws_free_environ(), **target.env}
    else:
        args = ["--data-dir", str(target.data_dir)]
        env = {**os.environ, **target.env}
    proc = subprocess.run([sys.executable, "-m", "ociregistry", "du", "--quotas", "--json",
                           *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return {row["namespace"]: row for row in json.loads(proc.stdout)}


def denied(r: requests.Response) -> bool:
    """A quota refusal: 403 DENIED whose message names the quota."""
    if r.status_code != 403:
        return False
    errors = r.json()["errors"]
    return errors[0]["code"] == "DENIED" and "quota exceeded" in errors[0]["message"]


def push_blob(session: requests.Session, url: str, repo: str, data: bytes,
              mode: str = "monolithic") -> requests.Response:
    """monolithic (POST ?digest=), chunked (POST, PATCH with Content-Length, PUT) or
    streamed (PATCH without Content-Length: chunked transfer coding)."""
    digest = sha256(data)
    base = f"{url}/v2/{repo}/blobs/uploads/"
    if mode == "monolithic":
        return session.post(base, params={"digest": digest}, data=data, timeout=TIMEOUT)
    r = session.post(base, timeout=TIMEOUT)
    if r.status_code != 202:
        return r
    location = r.headers["Location"]
    if not location.startswith("http"):
        location = url + location
    half = len(data) // 2
    body: Any = data[:half] if mode == "chunked" else iter([data[:half]])
    r = session.patch(location, data=body, timeout=TIMEOUT,
                      headers={"Content-Type": "application/octet-stream"})
    if r.status_code != 202:
        return r
    location = r.headers["Location"]
    if not location.startswith("http"):
        location = url + location
    return session.put(location, params={"digest": digest}, data=data[half:], timeout=TIMEOUT)


def image(config_seed: bytes, layers: list[bytes]) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) of an image of ``layers``."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "seed": config_seed.hex()}).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)}
                   for x in layers],
    }
    return config, json.dumps(manifest).encode()


def push_image(session: requests.Session, url: str, repo: str, tag: str, config: bytes,
               layers: list[bytes], manifest: bytes, mode: str = "monolithic"
               ) -> requests.Response:
    """Push the blobs then the manifest; the first failing response, or the manifest's."""
    for blob in [config, *layers]:
        r = push_blob(session, url, repo, blob, mode)
        if r.status_code != 201:
            return r
    return session.put(f"{url}/v2/{repo}/manifests/{tag}", data=manifest, timeout=TIMEOUT,
                       headers={"Content-Type": OCI_MANIFEST})


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
