"""Push test content through the API with the Flask test client."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from flask.testing import FlaskClient

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CREATED = "2024-01-02T03:04:05Z"
COSIGN = "application/vnd.dev.cosign.artifact.sig.v1+json"


def blob(client: FlaskClient, repo: str, data: bytes, headers: dict | None = None) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                    headers=headers or {})
    assert r.status_code == 201, r.get_data(as_text=True)
    return digest


def manifest(client: FlaskClient, repo: str, ref: str, doc: dict,
             headers: dict | None = None) -> tuple[str, int]:
    body = json.dumps(doc).encode()
    r = client.put(f"/v2/{repo}/manifests/{ref}", data=body,
                   headers={"Content-Type": doc["mediaType"], **(headers or {})})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.headers["Docker-Content-Digest"], len(body)


@dataclass
class Image:
    digest: str
    size: int
    config_digest: str
    config_size: int
    layers: list[tuple[str, int]] = field(default_factory=list)

    @property
    def content_size(self) -> int:
        return self.config_size + sum(size for _digest, size in self.layers)


def image(client: FlaskClient, repo: str, tag: str, arch: str = "amd64", variant: str = "",
          layer_sizes: tuple[int, ...] = (3000, 5000), headers: dict | None = None,
          labels: dict | None = None, annotations: dict | None = None) -> Image:
    platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    config = json.dumps({
        **platform,
        "created": CREATED,
        "author": "ui tests",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "MODE=test"],
            "Entrypoint": ["/app/run.sh"],
            "Cmd": ["--serve"],
            "ExposedPorts": {"8080/tcp": {}, "9090/tcp": {}},
            "WorkingDir": "/app",
            "Labels": labels or {"org.opencontainers.image.title": "demo"},
        },
        "history": [
            {"created": CREATED, "created_by": "ADD rootfs /"},
            {"created": CREATED, "created_by": "ENV MODE=test", "empty_layer": True},
            {"created": CREATED, "created_by": "COPY app /app"},
        ],
        "nonce": os.urandom(8).hex(),
    }).encode()
    layers = []
    for size in layer_sizes:
        data = os.urandom(size)
        layers.append((blob(client, repo, data, headers), size))
    config_digest = blob(client, repo, config, headers)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
        "annotations": annotations or {"org.opencontainers.image.created": CREATED},
    }
    digest, size = manifest(client, repo, tag, doc, headers)
    return Image(digest, size, config_digest, len(config), layers)


def index(client: FlaskClient, repo: str, tag: str, children: list[tuple[Image, dict]],
          headers: dict | None = None) -> str:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": img.size,
             "platform": platform}
            for img, platform in children
        ],
    }
    return manifest(client, repo, tag, doc, headers)[0]


def referrer(client: FlaskClient, repo: str, subject: Image, artifact_type: str,
             payload: bytes = b"signature") -> str:
    empty = blob(client, repo, b"{}")
    data = blob(client, repo, payload)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": data,
                    "size": len(payload)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.size},
    }
    return manifest(client, repo, doc_digest_ref(doc), doc)[0]


def doc_digest_ref(doc: dict) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(doc).encode()).hexdigest()


@dataclass
class Seeded:
    amd64: Image
    arm64: Image
    index: str
    alpine: Image
    signature: str
    sbom: str


def standard(client: FlaskClient) -> Seeded:
    """team/app (1.0, arm, multi), library/alpine (3.20), a signature and an SBOM."""
    amd64 = image(client, "team/app", "1.0")
    arm64 = image(client, "team/app", "arm", arch="arm64", variant="v8", layer_sizes=(7000,))
    multi = index(client, "team/app", "multi", [
        (amd64, {"os": "linux", "architecture": "amd64"}),
        (arm64, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ])
    alpine = image(client, "library/alpine", "3.20", layer_sizes=(1000,))
    signature = referrer(client, "team/app", amd64, COSIGN)
    sbom = referrer(client, "team/app", amd64, "application/spdx+json", b'{"spdx": 1}')
    return Seeded(amd64, arm64, multi, alpine, signature, sbom)
