"""Garbage collection against a real server: `ociregistry gc` and POST /v2/gc."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    assert_error,
    make_image,
    push_blob,
    put_manifest,
    sha256,
)
from tests.server import RegistryProcess

# No grace period, and no tag restore window (it keeps what tags named for 14 days:
# tests/lifecycle_tags covers it): what these tests delete is free at once.
NO_GRACE = {"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0",
            "OCIREGISTRY_TAGS__RESTORE_WINDOW_SECONDS": "0"}
SUMMARY_RE = re.compile(
    r"^(?P<verb>freed|would free) (?P<bytes>\d+) bytes: (?P<blobs>\d+) blobs, "
    r"(?P<manifests>\d+) manifests, (?P<uploads>\d+) upload sessions, "
    r"(?P<orphans>\d+) orphan files \([\d.]+s\)$",
    re.M,
)
REPO = "gc/app"


@pytest.fixture
def no_grace(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry whose GC has no grace period (fresh blobs are fair game)."""
    server = RegistryProcess(tmp_path / "data", env=NO_GRACE).start()
    yield server
    server.stop()


def same_database(server: RegistryProcess) -> dict[str, str]:
    """The server's database URL, when it was given one (see tests/server.py)."""
    key = "OCIREGISTRY_DATABASE__URL"
    return {key: server.env[key]} if key in server.env else {}


def run_gc(server: RegistryProcess, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run `python -m ociregistry gc` on the server's data directory, while it runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "ociregistry", "gc", "--data-dir", str(server.data_dir), *args],
        env={**os.environ, **same_database(server), **(NO_GRACE if env is None else env)},
        cwd=str(server.data_dir.parent),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    match = SUMMARY_RE.search(proc.stdout)
    assert match, proc.stdout
    return {
        "verb": match["verb"],
        "bytes": int(match["bytes"]),
        "blobs": int(match["blobs"]),
        "manifests": int(match["manifests"]),
        "uploads": int(match["uploads"]),
        "orphans": int(match["orphans"]),
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }


def post_gc(server: RegistryProcess, **params: str) -> dict[str, Any]:
    r = requests.post(f"{server.url}/v2/gc", params=params, timeout=300)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def blob_file(server: RegistryProcess, digest: str) -> Path:
    algorithm, encoded = digest.split(":")
    return server.data_dir / "blobs" / algorithm / encoded[:2] / encoded


def blob_status(server: RegistryProcess, repo: str, digest: str) -> int:
    r = requests.get(f"{server.url}/v2/{repo}/blobs/{digest}")
    if r.status_code == 200:
        assert sha256(r.content) == digest
    return r.status_code


def image_blobs(manifest: dict[str, Any]) -> list[str]:
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


def push_image(server: RegistryProcess, repo: str, ref: str, **extra: Any) -> tuple[str, dict]:
    manifest = make_image(server.url, repo, extra=extra or None)
    r = put_manifest(server.url, repo, ref, manifest)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], manifest


def descriptor(digest: str, media_type: str = OCI_MANIFEST, size: int = 100) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def manifest_status(server: RegistryProcess, repo: str, ref: str) -> int:
    return requests.get(
        f"{server.url}/v2/{repo}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST},{OCI_INDEX}"}
    ).status_code


def assert_image_pulls(server: RegistryProcess, repo: str, ref: str, manifest: dict) -> None:
    assert manifest_status(server, repo, ref) == 200
    for digest in image_blobs(manifest):
        assert blob_status(server, repo, digest) == 200, digest


# -- blobs ------------------------------------------------------------------------
def test_cli_deletes_unreferenced_blobs_and_keeps_referenced_ones(no_grace):
    digest, manifest = push_image(no_grace, REPO, "v1")
    orphans = [os.urandom(1000), os.urandom(2345)]
    orphan_digests = [push_blob(no_grace.url, REPO, data) for data in orphans]
    assert all(blob_file(no_grace, d).is_file() for d in orphan_digests)

    result = run_gc(no_grace)

    assert result["verb"] == "freed"
    assert result["blobs"] == 2
    assert result["bytes"] == sum(len(d) for d in orphans)
    assert result["manifests"] == 0
    for orphan in orphan_digests:
        assert_error(
            requests.get(f"{no_grace.url}/v2/{REPO}/blobs/{orphan}"), 404, "BLOB_UNKNOWN"
        )
        assert requests.head(f"{no_grace.url}/v2/{REPO}/blobs/{orphan}").status_code == 404
        assert not blob_file(no_grace, orphan).exists()
    assert_image_pulls(no_grace, REPO, "v1", manifest)
    assert_image_pulls(no_grace, REPO, digest, manifest)
    assert all(blob_file(no_grace, d).is_file() for d in image_blobs(manifest))
    # a second run finds nothing more
    again = run_gc(no_grace)
    assert (again["blobs"], again["bytes"], again["manifests"]) == (0, 0, 0)


def test_cli_shows_progress_and_a_final_summary(no_grace):
    for _ in range(3):
        push_blob(no_grace.url, REPO, os.urandom(100))
    result = run_gc(no_grace)
    # progress goes to stderr phase by phase, the summary is the last line of stdout
    assert re.search(r"^blobs: 1/3$", result["stderr"], re.M), result["stderr"]
    assert re.search(r"^blobs: 3/3$", result["stderr"], re.M), result["stderr"]
    assert result["stdout"].strip().splitlines()[-1].startswith("freed 300 bytes: 3 blobs")


def test_cli_json_output(no_grace):
    push_blob(no_grace.url, REPO, b"x" * 10)
    proc = subprocess.run(
        [sys.executable, "-m", "ociregistry", "gc", "--json", "--data-dir", str(no_grace.data_dir)],
        env={**os.environ, **same_database(no_grace), **NO_GRACE},
        cwd=str(no_grace.data_dir.parent),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["blobs_deleted"] == 1
    assert result["bytes_freed"] == 10
    assert result["dry_run"] is False


def test_dry_run_reports_and_deletes_nothing(no_grace):
    _, manifest = push_image(no_grace, REPO, "v1")
    orphans = [push_blob(no_grace.url, REPO, os.urandom(n)) for n in (10, 20, 30)]

    dry = run_gc(no_grace, "--dry-run")

    assert dry["verb"] == "would free"
    assert (dry["blobs"], dry["bytes"]) == (3, 60)
    for orphan in orphans:
        assert blob_status(no_grace, REPO, orphan) == 200
        assert blob_file(no_grace, orphan).is_file()
    # POST /v2/gc?dry_run=true says the same and deletes nothing either
    body = post_gc(no_grace, dry_run="true")
    assert body["dry_run"] is True
    assert (body["blobs_deleted"], body["bytes_freed"]) == (3, 60)
    assert all(blob_status(no_grace, REPO, orphan) == 200 for orphan in orphans)
    # the real run frees exactly what the dry run announced
    real = run_gc(no_grace)
    assert (real["blobs"], real["bytes"]) == (3, 60)
    assert all(blob_status(no_grace, REPO, orphan) == 404 for orphan in orphans)
    assert_image_pulls(no_grace, REPO, "v1", manifest)


def test_blobs_within_the_grace_period_are_kept(fresh_registry):
    """The default grace period (an hour) protects a blob pushed a moment ago."""
    orphan = push_blob(fresh_registry.url, REPO, os.urandom(500))
    result = run_gc(fresh_registry, env={})
    assert (result["blobs"], result["bytes"]) == (0, 0)
    body = post_gc(fresh_registry)
    assert body["blobs_deleted"] == 0
    assert blob_status(fresh_registry, REPO, orphan) == 200
    assert blob_file(fresh_registry, orphan).is_file()
    # the same registry without a grace period collects it
    assert run_gc(fresh_registry, env=NO_GRACE)["blobs"] == 1
    assert blob_status(fresh_registry, REPO, orphan) == 404


def test_deleting_a_manifest_frees_its_blobs_but_not_shared_ones(no_grace):
    _, keep = push_image(no_grace, REPO, "keep")
    gone_digest, gone = push_image(no_grace, REPO, "gone")
    # a layer that both images use
    shared = keep["layers"][0]
    gone_with_shared = {**gone, "layers": [*gone["layers"], shared]}
    r = put_manifest(no_grace.url, REPO, "gone", gone_with_shared)
    assert r.status_code == 201
    gone_digest2 = r.headers["Docker-Content-Digest"]
    for digest in (gone_digest, gone_digest2):
        r = requests.delete(f"{no_grace.url}/v2/{REPO}/manifests/{digest}")
        assert r.status_code == 202

    result = run_gc(no_grace)

    assert result["blobs"] == 3  # gone's config and two layers
    for digest in image_blobs(gone):
        assert blob_status(no_grace, REPO, digest) == 404
        assert not blob_file(no_grace, digest).exists()
    assert_image_pulls(no_grace, REPO, "keep", keep)


def test_blob_used_by_another_repository_is_kept(no_grace):
    _, first = push_image(no_grace, "gc/first", "v1")
    # the second repository mounts the first one's blobs for its own image
    for digest in image_blobs(first):
        r = requests.post(
            f"{no_grace.url}/v2/gc/second/blobs/uploads/",
            params={"mount": digest, "from": "gc/first"},
        )
        assert r.status_code == 201
    r = put_manifest(no_grace.url, "gc/second", "v1", first)
    assert r.status_code == 201
    # the first repository deletes its image
    digest = r.headers["Docker-Content-Digest"]
    assert requests.delete(f"{no_grace.url}/v2/gc/first/manifests/{digest}").status_code == 202

    assert run_gc(no_grace)["blobs"] == 0
    assert_image_pulls(no_grace, "gc/second", "v1", first)


def test_orphan_files_from_a_crash_are_removed(no_grace):
    """Bytes renamed into place with no index row (a crash in between)."""
    data = os.urandom(777)
    digest = sha256(data)
    path = blob_file(no_grace, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    assert blob_status(no_grace, REPO, digest) == 404  # never visible

    result = run_gc(no_grace)

    assert result["orphans"] == 1
    assert result["bytes"] == 777
    assert not path.exists()


# -- untagged manifests ----------------------------------------------------------------
def test_delete_untagged(no_grace):
    url = no_grace.url
    # A loses its tag to B
    a_digest, a = push_image(no_grace, REPO, "v1")
    b_digest, b = push_image(no_grace, REPO, "v1")
    # U was only ever pushed by digest
    u = make_image(url, REPO)
    r = put_manifest(url, REPO, sha256(json.dumps(u).encode()), u)
    assert r.status_code == 201
    u_digest = r.headers["Docker-Content-Digest"]
    # a tagged index over two untagged children
    children = []
    for _ in range(2):
        child = make_image(url, REPO)
        body = json.dumps(child).encode()
        assert put_manifest(url, REPO, sha256(body), body).status_code == 201
        children.append((sha256(body), child, len(body)))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor(d, size=n) for d, _, n in children],
    }
    assert put_manifest(url, REPO, "multi", index, media_type=OCI_INDEX).status_code == 201
    # an untagged signature of B (kept) and one of A (goes with A)
    sig_b = make_image(url, REPO, extra={"subject": descriptor(b_digest)})
    sig_b_digest = sha256(json.dumps(sig_b).encode())
    assert put_manifest(url, REPO, sig_b_digest, sig_b).status_code == 201
    sig_a = make_image(url, REPO, extra={"subject": descriptor(a_digest)})
    sig_a_digest = sha256(json.dumps(sig_a).encode())
    assert put_manifest(url, REPO, sig_a_digest, sig_a).status_code == 201

    # without --delete-untagged, untagged manifests stay
    plain = run_gc(no_grace)
    assert (plain["manifests"], plain["blobs"]) == (0, 0)
    assert manifest_status(no_grace, REPO, a_digest) == 200

    result = run_gc(no_grace, "--delete-untagged")

    assert result["manifests"] == 3  # A, U, and A's signature
    assert result["blobs"] == 9  # their configs and layers
    for gone, manifest in ((a_digest, a), (u_digest, u), (sig_a_digest, sig_a)):
        assert_error(
            requests.get(f"{url}/v2/{REPO}/manifests/{gone}"), 404, "MANIFEST_UNKNOWN"
        )
        assert all(blob_status(no_grace, REPO, d) == 404 for d in image_blobs(manifest))
    assert_image_pulls(no_grace, REPO, "v1", b)
    assert_image_pulls(no_grace, REPO, b_digest, b)
    # children of a tagged index are never deleted
    assert manifest_status(no_grace, REPO, "multi") == 200
    for child_digest, child, _ in children:
        assert_image_pulls(no_grace, REPO, child_digest, child)
    # nor are the referrers of a kept manifest
    assert_image_pulls(no_grace, REPO, sig_b_digest, sig_b)
    referrers = requests.get(f"{url}/v2/{REPO}/referrers/{b_digest}").json()
    assert [m["digest"] for m in referrers["manifests"]] == [sig_b_digest]
    assert requests.get(f"{url}/v2/{REPO}/referrers/{a_digest}").json()["manifests"] == []
    assert requests.get(f"{url}/v2/{REPO}/tags/list").json()["tags"] == ["multi", "v1"]


def test_untagging_an_index_frees_its_children(no_grace):
    url = no_grace.url
    child = make_image(url, REPO)
    body = json.dumps(child).encode()
    assert put_manifest(url, REPO, sha256(body), body).status_code == 201
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [descriptor(sha256(body), size=len(body))]}
    assert put_manifest(url, REPO, "multi", index, media_type=OCI_INDEX).status_code == 201
    assert requests.delete(f"{url}/v2/{REPO}/manifests/multi").status_code == 202

    body_json = post_gc(no_grace, delete_untagged="true")

    assert body_json["manifests_deleted"] == 2
    assert body_json["blobs_deleted"] == 3
    assert manifest_status(no_grace, REPO, sha256(body)) == 404


def test_dry_run_with_delete_untagged_announces_what_the_real_run_frees(no_grace):
    url = no_grace.url
    # A loses its tag; its signature and an untagged index's child go with them
    a_digest, a = push_image(no_grace, REPO, "v1")
    push_image(no_grace, REPO, "v1")
    sig_a = make_image(url, REPO, extra={"subject": descriptor(a_digest)})
    assert put_manifest(url, REPO, sha256(json.dumps(sig_a).encode()), sig_a).status_code == 201
    child = make_image(url, REPO)
    body = json.dumps(child).encode()
    assert put_manifest(url, REPO, sha256(body), body).status_code == 201
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [descriptor(sha256(body), size=len(body))]}
    r = put_manifest(url, REPO, sha256(json.dumps(index).encode()), index, media_type=OCI_INDEX)
    assert r.status_code == 201

    dry = run_gc(no_grace, "--dry-run", "--delete-untagged")
    api = post_gc(no_grace, dry_run="true", delete_untagged="true")

    assert dry["verb"] == "would free"
    assert_image_pulls(no_grace, REPO, a_digest, a)
    assert_image_pulls(no_grace, REPO, sha256(body), child)
    assert api["dry_run"] is True
    real = run_gc(no_grace, "--delete-untagged")
    assert (real["manifests"], real["blobs"]) == (4, 9)  # A, its signature, index, child
    assert (dry["manifests"], dry["blobs"], dry["bytes"]) == (
        real["manifests"], real["blobs"], real["bytes"]
    )
    assert (api["manifests_deleted"], api["blobs_deleted"], api["bytes_freed"]) == (
        real["manifests"], real["blobs"], real["bytes"]
    )


# -- upload sessions --------------------------------------------------------------------
def _open_upload(server: RegistryProcess, data: bytes) -> str:
    r = requests.post(f"{server.url}/v2/{REPO}/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    if location.startswith("/"):
        location = server.url + location
    r = requests.patch(
        location, data=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 202
    return location


def test_stale_upload_sessions_expire(tmp_path):
    env = {**NO_GRACE, "OCIREGISTRY_GC__UPLOAD_TTL_SECONDS": "0"}
    server = RegistryProcess(tmp_path / "data", env=env).start()
    try:
        location = _open_upload(server, b"abandoned half")
        upload_id = location.rstrip("/").rsplit("/", 1)[1]
        assert (server.data_dir / "uploads" / upload_id).is_file()

        body = post_gc(server)

        assert body["uploads_expired"] == 1
        assert_error(requests.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
        more = requests.patch(
            location, data=b"more", headers={"Content-Type": "application/octet-stream"}
        )
        assert_error(more, 404, "BLOB_UPLOAD_UNKNOWN")
        assert not (server.data_dir / "uploads" / upload_id).exists()
        # the CLI does the same
        _open_upload(server, b"another")
        assert run_gc(server, env=env)["uploads"] == 1
    finally:
        server.stop()


def test_live_upload_sessions_survive_gc(no_grace):
    """Sessions younger than the upload TTL (a day by default) are left alone."""
    data = os.urandom(3000)
    location = _open_upload(no_grace, data[:1000])
    assert run_gc(no_grace)["uploads"] == 0
    assert post_gc(no_grace)["uploads_expired"] == 0
    r = requests.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-999"
    r = requests.put(location, params={"digest": sha256(data)}, data=data[1000:])
    assert r.status_code == 201
    assert blob_status(no_grace, REPO, sha256(data)) == 200


# -- POST /v2/gc ------------------------------------------------------------------------
def test_post_gc_answers_json_with_the_counts(no_grace):
    _, keep = push_image(no_grace, REPO, "v1")
    orphans = [push_blob(no_grace.url, REPO, os.urandom(n)) for n in (100, 200)]

    body = post_gc(no_grace)

    assert body["dry_run"] is False
    assert body["blobs_deleted"] == 2
    assert body["bytes_freed"] == 300
    assert body["manifests_deleted"] == 0
    assert body["uploads_expired"] == 0
    assert body["orphan_files_deleted"] == 0
    assert isinstance(body["duration_seconds"], int | float)
    assert all(blob_status(no_grace, REPO, d) == 404 for d in orphans)
    assert_image_pulls(no_grace, REPO, "v1", keep)


def test_post_gc_uses_the_server_settings(fresh_registry):
    """The server was started with the default grace period: a fresh orphan stays."""
    orphan = push_blob(fresh_registry.url, REPO, b"fresh")
    assert post_gc(fresh_registry)["blobs_deleted"] == 0
    assert blob_status(fresh_registry, REPO, orphan) == 200


def test_gc_endpoint_accepts_post_only(no_grace):
    r = requests.get(f"{no_grace.url}/v2/gc")
    assert r.status_code in (404, 405)
    assert r.json()["errors"]
