"""A throwaway CNCF Distribution (Debian's ``docker-registry``, 2.8.2) for import tests.

Started with a config written here, on a free loopback port, storing on a local
directory or in an S3 bucket; never the machine's own service or /etc config.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from ociregistry.core.manifests import canonical_payload
from tests.server import free_port

START_TIMEOUT = 60
V2 = "docker/registry/v2"


def distribution_binary() -> str:
    found = shutil.which("docker-registry") or shutil.which("registry")
    if found is None:
        pytest.fail("docker-registry not installed (apt-get install docker-registry)")
    return found


class Distribution:
    """``docker-registry serve CONFIG``; stores under ``root`` or in ``s3``."""

    def __init__(self, base: Path, s3: dict[str, Any] | None = None) -> None:
        self.base = base
        self.root = base / "distribution"
        self.port = free_port()
        self.s3 = s3
        self.proc: subprocess.Popen | None = None
        self.log_path = base / "distribution.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _config(self) -> dict[str, Any]:
        storage: dict[str, Any] = {
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        }
        if self.s3 is None:
            storage["filesystem"] = {"rootdirectory": str(self.root)}
        else:
            storage["s3"] = self.s3
            storage["redirect"] = {"disable": True}
        return {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": storage,
            "http": {"addr": self.host, "secret": "import-test"},
            # Schema 1 pushes are refused by default since 2.8; the import must meet some.
            "compatibility": {"schema1": {"enabled": True}},
        }

    def start(self) -> Distribution:
        config = self.base / "distribution.yml"
        config.write_text(yaml.safe_dump(self._config()))
        # 2.8.2's S3 driver fails at start when AWS_CA_BUNDLE is set (even empty);
        # nothing else from AWS_* may steer it either.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [distribution_binary(), "serve", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"distribution exited: {self.tail()}")
            try:
                if requests.get(f"{self.url}/v2/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"distribution did not start: {self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()

    # -- what it serves -----------------------------------------------------
    def catalog(self) -> list[str]:
        return requests.get(f"{self.url}/v2/_catalog?n=1000", timeout=30).json()["repositories"]

    def tags(self, repo: str) -> list[str]:
        return requests.get(f"{self.url}/v2/{repo}/tags/list", timeout=30).json()["tags"] or []


SIGNED_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
])


def get_manifest(url: str, repo: str, ref: str,
                 auth: Any = None) -> tuple[int, bytes, str | None, str | None]:
    """(status, body, Docker-Content-Digest, Content-Type) of a manifest GET."""
    r = requests.get(f"{url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT},
                     timeout=60, auth=auth)
    return (r.status_code, r.content, r.headers.get("Docker-Content-Digest"),
            r.headers.get("Content-Type"))


def blob_digest(url: str, repo: str, digest: str, auth: Any = None) -> str | None:
    """The sha256 of a blob as served (streamed), or None when not 200."""
    import hashlib

    with requests.get(f"{url}/v2/{repo}/blobs/{digest}", stream=True, timeout=120,
                      auth=auth) as r:
        if r.status_code != 200:
            return None
        h = hashlib.sha256()
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
        return "sha256:" + h.hexdigest()


# -- filling a Distribution and comparing what two registries serve -----------

@dataclass
class Filled:
    """What a Distribution was filled with: refs to compare and refs that must 404."""

    refs: list[tuple[str, str]] = field(default_factory=list)  # (repo, tag or digest)
    gone: list[tuple[str, str]] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)  # kind -> a path in the report


def _digest_of(url: str, repo: str, ref: str) -> str:
    status, _body, digest, _ctype = get_manifest(url, repo, ref)
    assert status == 200 and digest, (repo, ref, status)
    return digest


def fill(dist: Distribution, skopeo: Any, base: Path, salt: str) -> Filled:
    """Pushes with skopeo: a multi-layer OCI image, the same as Docker schema 2 and
    as signed schema 1, a multi-arch index, a moved tag (old revision kept untagged)
    and a deleted manifest with its tag."""
    from tests.clients import images

    filled = Filled()
    one, two, multi = base / "one", base / "two", base / "multi"
    images.write_image(one, f"{salt}-one", tag="v1")
    images.write_image(two, f"{salt}-two", tag="v1")
    images.write_multiarch(multi, f"{salt}-multi", tag="m")
    host = dist.host

    def push(src: Path, tag: str, dest: str, *options: str) -> None:
        skopeo.copy(f"oci:{src}:{tag}", f"docker://{host}/{dest}", *options)

    push(one, "v1", "team/app:oci")
    push(one, "v1", "team/app:docker", "--format", "v2s2")
    push(one, "v1", "team/legacy:v1", "--format", "v2s1")
    push(multi, "m", "team/multi:m", "--all")
    push(multi, "m", "team/multi:docker", "--all", "--format", "v2s2")  # a manifest list
    push(two, "v1", "team/app:moving")
    old = _digest_of(dist.url, "team/app", "moving")
    push(one, "v1", "team/app:moving")  # the tag moves; its old revision stays untagged
    # A schema 1 manifest signed by its pusher (libtrust's JWS), pushed as old docker did.
    layer = push_blob(dist.url, "team/signed", b"signed layer " + salt.encode())
    signed = libtrust_signed_schema1({
        "schemaVersion": 1, "name": "team/signed", "tag": "v1", "architecture": "amd64",
        "fsLayers": [{"blobSum": layer}],
        "history": [{"v1Compatibility": json.dumps({"id": hashlib_hex(salt)})}],
    })
    r = requests.put(f"{dist.url}/v2/team/signed/manifests/v1", data=signed, timeout=60,
                     headers={"Content-Type": SIGNED_SCHEMA1})
    assert r.status_code == 201, r.text
    push(two, "v1", "other/deleted:gone", "--format", "v2s2")
    deleted = _digest_of(dist.url, "other/deleted", "gone")
    skopeo.delete(f"docker://{host}/other/deleted:gone")
    push(one, "v1", "other/deleted:kept")
    filled.gone += [("other/deleted", "gone"), ("other/deleted", deleted)]
    for repo in dist.catalog():
        for tag in dist.tags(repo):
            # On S3, Distribution may still list a deleted manifest's tag (404 on GET).
            if (repo, tag) not in filled.gone:
                filled.refs.append((repo, tag))
    filled.refs.append(("team/app", old))
    return filled


def hashlib_hex(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def plant_broken(put: Any, filled: Filled) -> None:
    """Files as a crash or a bad tool leaves them; ``put(rel, data)`` writes a file
    under docker/registry/v2."""
    import hashlib

    missing = "sha256:" + hashlib.sha256(b"never stored " + os.urandom(8)).hexdigest()
    garbage = b"{ this is not a manifest"
    bad = "sha256:" + hashlib.sha256(garbage).hexdigest()
    repo = "repositories/team/app"
    layer = f"{repo}/_layers/sha256/{missing[7:]}/link"
    put(layer, missing.encode())
    put(f"repositories/team/broken/_manifests/revisions/sha256/{missing[7:]}/link",
        missing.encode())
    put(f"blobs/sha256/{bad[7:9]}/{bad[7:]}/data", garbage)
    put(f"repositories/team/broken/_manifests/revisions/sha256/{bad[7:]}/link", bad.encode())
    put("repositories/team/broken/_manifests/tags/junk/current/link", bad.encode())
    empty = f"{repo}/_manifests/tags/crashed/current/link"
    put(empty, b"")
    filled.broken = {"missing-blob": layer, "empty-link": empty,
                     "unparsable-manifest": bad, "missing-revision": missing}


def _children(body: bytes) -> tuple[list[str], list[str]]:
    """(child manifests, blobs) a manifest references."""
    doc = json.loads(body)
    if "manifests" in doc:
        return [m["digest"] for m in doc["manifests"]], []
    if doc.get("schemaVersion") == 1:
        return [], [layer["blobSum"] for layer in doc["fsLayers"]]
    return [], [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]


def assert_serves_the_same(dist_url: str, our_url: str, filled: Filled,
                           auth: Any = None) -> int:
    """Every ref (and every child and blob under it) byte-identical on both;
    every gone ref 404 on both. Returns how many manifests were compared."""
    seen: set[tuple[str, str]] = set()
    queue = list(filled.refs)
    while queue:
        repo, ref = queue.pop()
        if (repo, ref) in seen:
            continue
        seen.add((repo, ref))
        theirs = get_manifest(dist_url, repo, ref)
        ours = get_manifest(our_url, repo, ref, auth)
        assert theirs[0] == 200, (repo, ref, theirs[:1])
        assert ours[0] == 200, (repo, ref, ours[0])
        if theirs[3] == SIGNED_SCHEMA1:
            # Distribution keeps schema 1 unsigned and signs it afresh on each GET
            # (two of its own GETs differ); what it stored is the signed part.
            assert ours[1] == canonical_payload(theirs[1], SIGNED_SCHEMA1), f"{repo}:{ref}"
        else:
            assert ours[1] == theirs[1], f"{repo}:{ref}: manifest bytes differ"
        assert ours[2] == theirs[2], f"{repo}:{ref}: digest differs"
        children, blobs = _children(theirs[1])
        queue += [(repo, child) for child in children]
        for blob in set(blobs):
            assert blob_digest(our_url, repo, blob, auth) == blob, f"{repo}: blob {blob}"
    for repo, ref in filled.gone:
        assert get_manifest(dist_url, repo, ref)[0] == 404
        assert get_manifest(our_url, repo, ref, auth)[0] == 404, (repo, ref)
    return len(seen)


def push_blob(url: str, repo: str, data: bytes) -> str:
    """POST then PUT (Distribution does not take a monolithic POST)."""
    import hashlib
    from urllib.parse import urljoin

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=60)
    assert r.status_code == 202, r.text
    location = urljoin(url, r.headers["Location"])
    r = requests.put(location, params={"digest": digest}, data=data, timeout=300,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


# -- stores written by hand, for the odd files a real store can hold -----------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


class Store:
    """Writes files as Distribution lays them out under docker/registry/v2."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.v2 = root / "docker" / "registry" / "v2"
        (self.v2 / "repositories").mkdir(parents=True)

    def put(self, rel: str, data: bytes) -> None:
        path = self.v2 / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def blob(self, data: bytes) -> str:
        d = digest(data)
        self.put(f"blobs/sha256/{d[7:9]}/{d[7:]}/data", data)
        return d

    def image(self, repo: str, tag: str | None, salt: str) -> tuple[str, bytes]:
        config, layer = f'{{"salt":"{salt}"}}'.encode(), f"layer {salt}".encode()
        blobs = [self.blob(config), self.blob(layer)]
        for d in blobs:
            self.put(f"repositories/{repo}/_layers/sha256/{d[7:]}/link", d.encode())
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": blobs[0], "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": blobs[1], "size": len(layer)}],
        }).encode()
        m = self.blob(manifest)
        self.put(f"repositories/{repo}/_manifests/revisions/sha256/{m[7:]}/link", m.encode())
        if tag:
            self.put(f"repositories/{repo}/_manifests/tags/{tag}/current/link", m.encode())
        return m, manifest


def libtrust_signed_schema1(manifest: dict[str, Any]) -> bytes:
    """A signed schema 1 manifest whose key id Distribution (libtrust) accepts: the
    kid is libtrust's fingerprint of the key (SHA-256 of its SubjectPublicKeyInfo,
    240 bits, base32, in groups of four). The header is not signed: only the
    kid changes in the bytes."""
    import base64
    import hashlib

    from tests.helpers import sign_schema1

    signed, _canonical = sign_schema1(manifest)
    jwk = json.loads(signed)["signatures"][0]["header"]["jwk"]

    def b64(value: str) -> bytes:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))

    spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
    der = spki + b"\x04" + b64(jwk["x"]) + b64(jwk["y"])
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    kid = ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))
    return signed.replace(jwk["kid"].encode(), kid.encode())
