"""An instance dies (SIGKILL: master and workers) in the middle of a push.

The dying request was streaming a big layer straight to that instance, and the
store already held a multipart part of it. Afterwards the client either
resumes the session on another instance (GET of its status, then PATCH from the
offset it reports) or starts over through nginx, which routes around the dead
instance. Nothing is ever half visible: the blob is unknown until its upload is
finished, the manifest until it is pushed; then everything pulls, from every
instance, the restarted one included.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator

import requests

from tests.cluster.test_cluster_uploads import blob_status, leftovers, on, patch, status_range
from tests.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, absolute, push_blob, sha256

MiB = 1 << 20
TIMEOUT = 300
# A dead writer's upload lease runs out after core/uploads.py LEASE_SECONDS (15 s; a
# second request waits LEASE_WAIT_SECONDS for it); a patient client retries on 409.
RESUME_DEADLINE = 240


class DyingPatch:
    """A PATCH streaming ``data`` slowly to one instance; it stops sending after
    ``pause_after`` bytes until ``release()``, so the instance can be killed mid-body."""

    def __init__(self, url: str, data: bytes, start: int, pause_after: int) -> None:
        self.data = data
        self.pause_after = pause_after
        self._go = threading.Event()
        self.outcome: object = None
        self.thread = threading.Thread(target=self._send, args=(url, start))

    def _body(self) -> Iterator[bytes]:
        for offset in range(0, len(self.data), 256 * 1024):
            if offset >= self.pause_after:
                self._go.wait(TIMEOUT)
            yield self.data[offset:offset + 256 * 1024]

    def _send(self, url: str, start: int) -> None:
        try:
            self.outcome = requests.patch(url, data=self._body(), timeout=TIMEOUT, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(self.data) - 1}"})
        except requests.RequestException as exc:
            self.outcome = exc

    def start(self) -> DyingPatch:
        self.thread.start()
        return self

    def release(self) -> None:
        self._go.set()
        self.thread.join(TIMEOUT)


def wait_for_a_stored_part(cluster, upload_id: str) -> None:
    """Until the store holds a multipart part of the session: the push is really mid-way."""
    client = cluster.s3.client()
    key = f"{cluster.prefix}uploads/{upload_id}/data"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = client.list_multipart_uploads(Bucket=cluster.bucket, Prefix=key)
        for upload in found.get("Uploads", []):
            parts = client.list_parts(Bucket=cluster.bucket, Key=key,
                                      UploadId=upload["UploadId"])
            if parts.get("Parts"):
                return
        time.sleep(0.1)
    raise AssertionError(f"no part of {upload_id} reached the store:\n{cluster.logs()}")


def resume(url: str, data: bytes, start: int) -> requests.Response:
    """PATCH from ``start``; while a dead writer's lease holds the session (409,
    Retry-After), wait and send again, as a patient client does."""
    deadline = time.monotonic() + RESUME_DEADLINE
    while True:
        r = patch(url, data, start)
        if r.status_code != 409 or time.monotonic() > deadline:
            return r
        time.sleep(float(r.headers.get("Retry-After", "5")))


def small_image_parts(url: str, repo: str, big: bytes) -> tuple[bytes, dict]:
    """Push a config through ``url``; the manifest naming it and the big layer."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "n": uuid.uuid4().hex}).encode()
    push_blob(url, repo, config)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(big), "size": len(big)}],
    }
    return json.dumps(manifest).encode(), manifest


def manifest_status(cluster, repo: str, ref: str) -> set[int]:
    urls = [inst.url for i, inst in enumerate(cluster.instances) if cluster.running(i)]
    return {requests.head(f"{u}/v2/{repo}/manifests/{ref}", timeout=TIMEOUT,
                          headers={"Accept": OCI_MANIFEST}).status_code
            for u in [*urls, cluster.url]}


def assert_pulls(url: str, repo: str, body: bytes, manifest: dict) -> None:
    r = requests.get(f"{url}/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST},
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.content == body
    for desc in [manifest["config"], *manifest["layers"]]:
        blob = requests.get(f"{url}/v2/{repo}/blobs/{desc['digest']}", timeout=TIMEOUT)
        assert blob.status_code == 200
        assert sha256(blob.content) == desc["digest"]


def test_killed_mid_patch_then_resumed_on_another_instance(make_cluster):
    cluster = make_cluster(settings={"gc": {"upload_ttl_seconds": 0}})
    first, second, third = (inst.url for inst in cluster.instances)
    repo = f"crash/{uuid.uuid4().hex[:8]}"
    big = os.urandom(30 * MiB)
    digest = sha256(big)
    body, manifest = small_image_parts(cluster.url, repo, big)
    r = requests.post(f"{cluster.url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    location = absolute(cluster.url, r.headers["Location"])
    upload_id = r.headers["Docker-Upload-UUID"]
    assert patch(on(first, location), big[:3 * MiB], 0).status_code == 202

    dying = DyingPatch(on(second, location), big[3 * MiB:], 3 * MiB, pause_after=12 * MiB)
    dying.start()
    wait_for_a_stored_part(cluster, upload_id)
    assert blob_status(cluster, repo, digest) == {404}
    cluster.kill(1)
    dying.release()
    assert isinstance(dying.outcome, requests.ConnectionError), dying.outcome

    # Only what was recorded before the crash counts; the rest is sent again.
    assert status_range(location) == f"0-{3 * MiB - 1}"
    assert status_range(on(third, location)) == f"0-{3 * MiB - 1}"
    r = resume(on(third, location), big[3 * MiB:4 * MiB], 3 * MiB)
    assert r.status_code == 202, r.text
    r = patch(on(first, location), big[4 * MiB:], 4 * MiB)
    assert r.status_code == 202, r.text
    assert blob_status(cluster, repo, digest) == {404}
    r = requests.put(location, params={"digest": digest}, timeout=TIMEOUT)
    assert r.status_code == 201, r.text

    assert manifest_status(cluster, repo, "v1") == {404}
    r = requests.put(f"{cluster.url}/v2/{repo}/manifests/v1", data=body, timeout=TIMEOUT,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    for url in (cluster.url, first, third):
        assert_pulls(url, repo, body, manifest)
    cluster.restart(1)
    assert_pulls(second, repo, body, manifest)

    # What the dead request left in the store (its multipart upload) goes with GC.
    r = requests.post(f"{first}/v2/gc", timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert leftovers(cluster, upload_id) == ([], [])
    assert_pulls(cluster.url, repo, body, manifest)


def test_killed_mid_push_then_pushed_again_through_nginx(make_cluster):
    cluster = make_cluster()
    repo = f"crash/{uuid.uuid4().hex[:8]}"
    big = os.urandom(20 * MiB)
    digest = sha256(big)
    body, manifest = small_image_parts(cluster.url, repo, big)
    r = requests.post(f"{cluster.instances[0].url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
    location = absolute(cluster.instances[0].url, r.headers["Location"])
    dying = DyingPatch(location, big, 0, pause_after=10 * MiB).start()
    wait_for_a_stored_part(cluster, r.headers["Docker-Upload-UUID"])
    cluster.kill(0)
    dying.release()
    assert isinstance(dying.outcome, requests.ConnectionError), dying.outcome
    assert blob_status(cluster, repo, digest) == {404}

    # The client starts over through nginx, which sends nothing to the dead instance.
    r = requests.post(f"{cluster.url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                      data=big, timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    assert manifest_status(cluster, repo, "v1") == {404}
    r = requests.put(f"{cluster.url}/v2/{repo}/manifests/v1", data=body, timeout=TIMEOUT,
                     headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    for _ in range(len(cluster.instances) + 1):
        assert_pulls(cluster.url, repo, body, manifest)
    cluster.restart(0)
    assert_pulls(cluster.instances[0].url, repo, body, manifest)
    for _ in range(len(cluster.instances)):
        assert_pulls(cluster.url, repo, body, manifest)
