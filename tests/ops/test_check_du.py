"""`ociregistry check [--repair]` finds each planted corruption; `du` adds up usage."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.helpers import make_image, put_manifest, sha256
from tests.ops.conftest import cli
from tests.server import RegistryProcess


def blob_file(data_dir: Path, digest: str) -> Path:
    algorithm, hexpart = digest.split(":")
    return data_dir / "blobs" / algorithm / hexpart[:2] / hexpart


def age(path: Path, seconds: float = 7200) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


@pytest.fixture
def populated(tmp_path):
    """A registry data dir holding two images, the server stopped."""
    data = tmp_path / "data"
    server = RegistryProcess(data).start()
    images = {}
    for repo in ("app/one", "app/two"):
        manifest = make_image(server.url, repo, layers=2)
        r = put_manifest(server.url, repo, "v1", manifest)
        assert r.status_code == 201
        images[repo] = (manifest, r.headers["Docker-Content-Digest"])
    # an upload session whose bytes will vanish
    r = requests.post(f"{server.url}/v2/app/one/blobs/uploads/")
    session = r.headers["Location"].rsplit("/", 1)[1]
    server.stop()
    return data, images, session


def test_a_healthy_registry_checks_clean(populated):
    data, images, session = populated
    (data / "uploads" / session).unlink()  # the only problem: handled below
    result = cli("check", "--data-dir", str(data), "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    result = cli("check", "--data-dir", str(data))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 6 blobs" in result.stdout
    assert "2 manifests: 0 problem(s)" in result.stdout


def test_check_finds_every_planted_corruption_and_repair_fixes_what_it_can(populated):
    data, images, session = populated
    manifest_one, digest_one = images["app/one"]
    manifest_two, _ = images["app/two"]
    corrupt = manifest_one["layers"][0]["digest"]
    missing = manifest_two["layers"][1]["digest"]
    blob_file(data, corrupt).write_bytes(b"not the original bytes")
    blob_file(data, missing).unlink()
    orphan_bytes = os.urandom(100)
    orphan = blob_file(data, sha256(orphan_bytes))
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_bytes)
    age(orphan)
    stray = data / "uploads" / str(uuid.uuid4())
    stray.write_bytes(b"half an upload")
    age(stray)
    (data / "uploads" / session).unlink()
    with sqlite3.connect(data / "registry.db") as db:
        db.execute(
            "UPDATE manifests SET payload = CAST(? AS BLOB) WHERE digest = ?",
            (b'{"tampered": true}', digest_one),
        )

    result = cli("check", "--data-dir", str(data), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout.splitlines()[-1])
    found = {(p["kind"], p["subject"]) for p in report["problems"]}
    assert found == {
        ("corrupt-blob", corrupt),
        ("missing-blob", missing),
        ("orphan-blob-file", sha256(orphan_bytes)),
        ("stray-upload-file", stray.name),
        ("upload-without-file", session),
        ("corrupt-manifest", digest_one),
    }

    result = cli("check", "--data-dir", str(data), "--repair")
    assert result.returncode == 1  # the tampered manifest can't be repaired
    assert "corrupt-manifest" in result.stdout and "NOT repaired" in result.stdout
    assert not orphan.exists() and not stray.exists()
    assert not blob_file(data, corrupt).exists()
    quarantined = os.listdir(data / "quarantine")
    assert len(quarantined) == 1 and quarantined[0].startswith(corrupt.replace(":", "-"))

    result = cli("check", "--data-dir", str(data), "--json")
    left = {p["kind"] for p in json.loads(result.stdout.splitlines()[-1])["problems"]}
    # the manifests that used the two lost blobs now point at nothing until re-pushed
    assert left == {"corrupt-manifest", "dangling-reference"}


def test_a_blob_file_younger_than_a_minute_without_a_row_is_not_a_problem(populated):
    """A publication links the blob's name before its row commits (storage/durable.py):
    a check running beside a push, or right after a crash cut one short, must not call
    that a problem; once older than a minute it is an orphan, and --repair removes it."""
    data, _images, session = populated
    (data / "uploads" / session).unlink()
    orphan_bytes = os.urandom(48)
    orphan = blob_file(data, sha256(orphan_bytes))
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_bytes)
    result = cli("check", "--data-dir", str(data), "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    assert orphan.exists()  # not this check's to remove: it may be about to get its row
    age(orphan, 120)
    result = cli("check", "--data-dir", str(data), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout.splitlines()[-1])
    assert [(p["kind"], p["subject"]) for p in report["problems"]] == [
        ("orphan-blob-file", sha256(orphan_bytes))]
    assert cli("check", "--data-dir", str(data), "--repair").returncode == 0
    assert not orphan.exists()


def test_after_repair_pushing_the_lost_blob_again_restores_the_image(populated):
    data, images, _session = populated
    manifest, _digest = images["app/two"]
    layer = manifest["layers"][0]
    blob_file(data, layer["digest"]).write_bytes(b"rotten")
    assert cli("check", "--data-dir", str(data), "--repair").returncode == 1
    server = RegistryProcess(data).start()
    try:
        url = f"{server.url}/v2/app/two/blobs/{layer['digest']}"
        assert requests.head(url).status_code == 404  # clients will upload it again
    finally:
        server.stop()


def test_du_reports_bytes_per_repository_and_what_is_shared(tmp_path):
    server = RegistryProcess(tmp_path / "data").start()
    try:
        one = make_image(server.url, "du/one", layers=2)
        assert put_manifest(server.url, "du/one", "v1", one).status_code == 201
        shared_layer = one["layers"][0]
        r = requests.post(
            f"{server.url}/v2/du/two/blobs/uploads/",
            params={"mount": shared_layer["digest"], "from": "du/one"},
        )
        assert r.status_code == 201
        two = make_image(server.url, "du/two", layers=1)
        two["layers"].append(shared_layer)
        assert put_manifest(server.url, "du/two", "v1", two).status_code == 201
    finally:
        server.stop()
    result = cli("du", "--data-dir", str(tmp_path / "data"), "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["repository"]: row for row in json.loads(result.stdout)}
    one_blobs = one["config"]["size"] + sum(x["size"] for x in one["layers"])
    assert rows["du/one"]["blobs"] == 3
    assert rows["du/one"]["shared_bytes"] == shared_layer["size"]
    assert rows["du/one"]["bytes"] > one_blobs  # blobs plus the manifest itself
    assert rows["du/two"]["shared_bytes"] == shared_layer["size"]
    result = cli("du", "--data-dir", str(tmp_path / "data"), "du/two")
    assert result.returncode == 0
    assert "du/two" in result.stdout and "du/one" not in result.stdout
    assert cli("du", "--data-dir", str(tmp_path / "data"), "nope/none").returncode == 1
