"""The management API on a cluster: any instance continues what another began.

Three instances on PostgreSQL + S3 (SeaweedFS) with Basic users and rules, and
no `ui.secret_key`: the key that signs pagination cursors is generated once and
kept in the index. A cursor from one instance pages on another; a user created
through one instance signs in on the others; a GC started on one is seen
running and finished from the others, and recorded in the shared history.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.auth.support import PASSWORDS, RULES, write_htpasswd
from tests.cluster.pg import PostgresCluster
from tests.cluster.s3 import SeaweedFS
from tests.cluster.topology import Cluster

ADMIN = ("root", PASSWORDS["root"])
REPO = "team-a/app"
TAGS = [f"v{i:02d}" for i in range(7)]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def api_cluster(postgres: PostgresCluster, seaweedfs: SeaweedFS, s3_bucket: str,
                tmp_path: Path) -> Iterator[Cluster]:
    auth = {"htpasswd": str(write_htpasswd(tmp_path / "htpasswd")), "rules": RULES,
            "groups": {"team-a": ["alice"]}}
    cluster = Cluster(tmp_path / "cluster", postgres.create_database(), seaweedfs, s3_bucket,
                      size=3, settings={"auth": auth, "ui": {"secret_key": ""},
                                        "storage": {"s3": {"redirect": False}}})
    cluster.start()
    yield cluster
    cluster.stop()


def _push_blob(s: requests.Session, url: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = s.post(f"{url}/v2/{REPO}/blobs/uploads/", params={"digest": digest}, data=data,
               timeout=60)
    assert r.status_code == 201, r.text
    return digest


def _push_tags(url: str) -> None:
    """One small image per tag (distinct configs), pushed as the admin."""
    s = requests.Session()
    s.auth = ADMIN
    for tag in TAGS:
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        layer = f"layer of {tag}".encode()
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _push_blob(s, url, config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": _push_blob(s, url, layer), "size": len(layer)}],
        }
        r = s.put(f"{url}/v2/{REPO}/manifests/{tag}", data=json.dumps(manifest).encode(),
                  headers={"Content-Type": OCI_MANIFEST}, timeout=60)
        assert r.status_code == 201, r.text


def _eventually(check, what: str, seconds: float = 60):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def test_a_cursor_made_on_one_instance_pages_on_the_others(api_cluster):
    urls = [inst.url for inst in api_cluster.instances]
    _push_tags(urls[0])
    seen: list[str] = []
    cursor = None
    for hop in range(len(TAGS)):
        url = urls[hop % 3] + f"/api/v1/repositories/{REPO}/tags"
        params = {"limit": 2, "sort": "name", **({"cursor": cursor} if cursor else {})}
        r = requests.get(url, params=params, auth=ADMIN, timeout=60)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [item["name"] for item in page["items"]]
        cursor = page.get("next")
        if not cursor:
            break
    assert seen == TAGS  # every tag once, in order, whichever instance answered
    # The repository's figures agree on every instance.
    sizes = {requests.get(u + f"/api/v1/repositories/{REPO}/summary", auth=ADMIN,
                          timeout=60).json()["size"] for u in urls}
    assert len(sizes) == 1


def test_a_user_made_on_one_instance_signs_in_on_the_others(api_cluster):
    urls = [inst.url for inst in api_cluster.instances]
    r = requests.post(urls[1] + "/api/v1/admin/users", auth=ADMIN, timeout=60,
                      json={"name": "dave", "password": "dave-secret-1"})
    assert r.status_code == 201, r.text
    for url in urls:  # the shared htpasswd file is re-read within about a second
        _eventually(lambda u=url: requests.get(u + "/api/v1/repositories",
                                               auth=("dave", "dave-secret-1"),
                                               timeout=60).status_code == 200,
                    f"dave signed in on {url}")
    r = requests.put(urls[2] + "/api/v1/admin/users/dave/password", auth=ADMIN, timeout=60,
                     json={"password": "dave-secret-2"})
    assert r.status_code in (200, 204), r.text
    for url in urls:
        _eventually(lambda u=url: requests.get(u + "/api/v1/repositories",
                                               auth=("dave", "dave-secret-1"),
                                               timeout=60).status_code == 401,
                    f"the old password refused on {url}")


def test_a_gc_started_on_one_instance_is_followed_from_the_others(api_cluster):
    urls = [inst.url for inst in api_cluster.instances]
    r = requests.post(urls[2] + "/api/v1/admin/gc", auth=ADMIN, json={"dry_run": False},
                      timeout=60)
    assert r.status_code == 202, r.text
    job = r.json()["job"]

    def finished_elsewhere() -> dict | None:
        status = requests.get(urls[0] + "/api/v1/admin/gc", auth=ADMIN, timeout=60).json()
        return status if status.get("job") == job and status.get("state") in (
            "finished", "failed", "refused") else None

    status = _eventually(finished_elsewhere, "the run seen finished from instance 0", 300)
    assert status["state"] == "finished", status
    history = requests.get(urls[1] + "/api/v1/admin/gc/runs", auth=ADMIN, timeout=60)
    assert history.status_code == 200 and history.json()["items"], history.text
    # Only admins: a pusher on another instance is refused.
    r = requests.post(urls[0] + "/api/v1/admin/gc", auth=("alice", PASSWORDS["alice"]),
                      json={"dry_run": True}, timeout=60)
    assert r.status_code == 403 and r.headers["Content-Type"] == "application/problem+json"
