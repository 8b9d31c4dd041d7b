"""`ociregistry import distribution PATH` against a real Distribution 2.8.2 filled by skopeo.

The registry serves while the import runs (as it would during a migration); every
tag Distribution serves is then pulled from this registry and compared byte for
byte (manifests, digests, blobs). Broken files planted in the store are reported
with their paths; a second run copies nothing; a killed run resumes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.clients.images import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from tests.distribution import (
    V2,
    Distribution,
    Filled,
    assert_serves_the_same,
    fill,
    get_manifest,
    plant_broken,
    push_blob,
)
from tests.helpers import put_manifest
from tests.ops.conftest import cli
from tests.server import RegistryProcess


def run_import(data: Path, source: str, *extra: str) -> dict:
    proc = cli("import", "distribution", "--data-dir", str(data), source, "--json", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Progress: repositories, manifests, bytes, rate and time left.
    assert re.search(r"repositories \d+/\d+  manifests \d+/\d+  .* left", proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory, skopeo):
    """A Distribution filled by skopeo, broken files planted; it keeps serving."""
    base = tmp_path_factory.mktemp("distribution")
    dist = Distribution(base).start()
    try:
        filled = fill(dist, skopeo, base / "layouts", uuid.uuid4().hex[:10])

        def put(rel: str, data: bytes) -> None:
            path = dist.root / V2 / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        plant_broken(put, filled)
        yield dist, filled
    finally:
        dist.stop()


@pytest.fixture(scope="module")
def imported(store, tmp_path_factory):
    """This registry, serving, with the store imported once."""
    dist, filled = store
    data = tmp_path_factory.mktemp("ours") / "data"
    server = RegistryProcess(data).start()
    try:
        report = run_import(data, str(dist.root))
        yield server, data, report
    finally:
        server.stop()


def test_every_tag_pulls_byte_identical(store, imported):
    dist, filled = store
    server, _data, report = imported
    compared = assert_serves_the_same(dist.url, server.url, filled)
    # Every kind of manifest was among them.
    kinds = {get_manifest(dist.url, repo, ref)[3] for repo, ref in filled.refs}
    assert kinds >= {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }, kinds
    assert compared >= len(filled.refs) + 2  # an index's children too
    assert sorted(requests.get(f"{server.url}/v2/_catalog").json()["repositories"]) == sorted(
        r for r in dist.catalog() if r != "team/broken"
    )
    for repo in ("team/app", "team/multi", "team/legacy", "other/deleted"):
        assert requests.get(f"{server.url}/v2/{repo}/tags/list").json()["tags"] == sorted(
            t for t in dist.tags(repo) if t != "crashed"
        )
    # The tag that moved left its old revision: imported, listed as untagged.
    untagged = [ref for repo, ref in filled.refs if ref.startswith("sha256:")]
    assert [f"team/app@{d}" for d in untagged] == [
        u for u in report["untagged"] if u.startswith("team/app@")
    ]
    assert report["manifests_imported"] >= 7 and report["blobs_copied"] > 0


def test_a_real_client_pulls_what_was_imported(store, imported, skopeo, tmp_path):
    dist, _filled = store
    server, _data, _report = imported
    for tag in ("oci", "docker"):
        theirs = skopeo.raw(f"docker://{dist.host}/team/app:{tag}")
        assert skopeo.raw(f"docker://{server.host}/team/app:{tag}") == theirs
    skopeo.copy(f"docker://{server.host}/team/multi:m", f"oci:{tmp_path / 'out'}:m", "--all")
    skopeo.copy(f"docker://{server.host}/team/legacy:v1", f"oci:{tmp_path / 'legacy'}:v1")
    skopeo.copy(f"docker://{server.host}/team/signed:v1", f"oci:{tmp_path / 'signed'}:v1")


def test_broken_files_are_reported_with_their_paths(store, imported):
    dist, filled = store
    _server, _data, report = imported
    base = str(dist.root / V2)
    found = {(p["kind"], p["path"]) for p in report["problems"]}
    assert ("missing-blob", f"{base}/{filled.broken['missing-blob']}") in found
    assert ("empty-link", f"{base}/{filled.broken['empty-link']}") in found
    bad = filled.broken["unparsable-manifest"]
    assert any(k == "unparsable-manifest" and bad[7:] in p for k, p in found)
    missing = filled.broken["missing-revision"]
    assert any(k == "missing-blob" and "team/broken/_manifests" in p and missing[7:] in p
               for k, p in found)
    # The tag on the unparsable manifest is reported, not imported.
    assert any(p["kind"] == "tag-skipped" and "team/broken/_manifests/tags/junk" in p["path"]
               for p in report["problems"])


def test_a_second_run_copies_nothing_and_picks_up_a_new_tag(store, imported, skopeo,
                                                            tmp_path):
    dist, filled = store
    server, data, _report = imported
    again = run_import(data, str(dist.root))
    assert again["blobs_copied"] == 0 and again["manifests_imported"] == 0
    assert again["tags_imported"] == 0 and again["manifests_present"] > 0
    assert again["blobs_present"] > 0  # counted as skipped, not silently passed over
    # Distribution still serves: a new image and a new tag arrive after the first run.
    from tests.clients import images

    images.write_image(tmp_path / "late", uuid.uuid4().hex[:10], tag="v1")
    skopeo.copy(f"oci:{tmp_path / 'late'}:v1", f"docker://{dist.host}/team/app:late")
    skopeo.copy(f"oci:{tmp_path / 'late'}:v1", f"docker://{dist.host}/team/new:v1")
    third = run_import(data, str(dist.root))
    assert third["tags_imported"] == 2 and third["manifests_imported"] == 2
    layers = len(images.write_image(tmp_path / "count", "x", tag="v1").layers)
    assert third["blobs_copied"] == layers + 1  # once, though two repositories link them
    late = Filled(refs=[("team/app", "late"), ("team/new", "v1")])
    assert_serves_the_same(dist.url, server.url, late)
    assert_serves_the_same(dist.url, server.url, filled)


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_a_killed_import_shows_nothing_half_done_and_resumes(tmp_path):
    """SIGKILL while a blob is being copied: what is visible is whole, a rerun finishes."""
    dist = Distribution(tmp_path).start()
    try:
        refs = []
        for i in range(6):
            repo = f"big/r{i}"
            config = json.dumps({"architecture": "amd64", "os": "linux", "i": i}).encode()
            data = os.urandom(24 << 20)  # big enough for the kill to land mid-copy
            manifest = {
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "size": len(config),
                           "digest": push_blob(dist.url, repo, config)},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "size": len(data),
                            "digest": push_blob(dist.url, repo, data)}],
            }
            del data
            assert put_manifest(dist.url, repo, "v1", manifest).status_code == 201
            refs.append((repo, "v1"))
        ours = tmp_path / "ours"
        cmd = [sys.executable, "-m", "ociregistry", "import", "distribution",
               "--data-dir", str(ours), "--jobs", "1", str(dist.root)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        uploads, db = ours / "uploads", ours / "registry.db"
        deadline = time.monotonic() + 300
        caught = False
        while time.monotonic() < deadline and proc.poll() is None:
            # Mid-copy: an upload has bytes, and some manifest is already in.
            if (uploads.is_dir() and any(p.stat().st_size for p in uploads.iterdir())
                    and db.exists() and _count(db, "manifests") >= 1):
                proc.send_signal(signal.SIGSTOP)
                caught = any(p.stat().st_size for p in uploads.iterdir())
                proc.kill()
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
        assert caught, "the import ended before it could be killed mid-copy"
        assert 1 <= _count(db, "manifests") < 6
        # What is visible is whole: every manifest's blobs are there.
        check = cli("check", "--data-dir", str(ours))
        assert check.returncode == 0, check.stdout + check.stderr
        server = RegistryProcess(ours).start()
        try:
            report = run_import(ours, str(dist.root))
            assert report["manifests_present"] >= 1 and report["problems"] == []
            assert report["manifests_imported"] + report["manifests_present"] == 6
            assert_serves_the_same(dist.url, server.url, Filled(refs=refs))
        finally:
            server.stop()
    finally:
        dist.stop()


def test_a_path_that_is_no_distribution_store_is_an_error(tmp_path):
    proc = cli("import", "distribution", "--data-dir", str(tmp_path / "data"), str(tmp_path))
    assert proc.returncode == 2
    assert "not a Distribution root" in proc.stderr


def test_link_mode_adopts_the_files_in_place(store, tmp_path):
    """--link on one filesystem: no byte copied, every tag still byte-identical."""
    dist, filled = store
    data = tmp_path / "linked"
    report = run_import(data, str(dist.root), "--link")
    assert report["blobs_copied"] == 0 and report["blobs_linked"] > 0
    server = RegistryProcess(data).start()
    try:
        assert_serves_the_same(dist.url, server.url, filled)
    finally:
        server.stop()
    assert cli("check", "--data-dir", str(data)).returncode == 0


def test_an_import_while_distribution_takes_pushes(tmp_path, skopeo):
    """Pushes go on during the first run (tags moving, images arriving); it reports no
    false problem, and a final run after the pushes stop makes both registries agree."""
    import threading

    from tests.clients import images

    dist = Distribution(tmp_path).start()
    try:
        layouts = []
        for i in range(6):
            layout = tmp_path / f"img{i}"
            images.write_image(layout, f"{uuid.uuid4().hex[:8]}-{i}", tag="v1")
            layouts.append(layout)
        skopeo.copy(f"oci:{layouts[0]}:v1", f"docker://{dist.host}/live/app:latest")
        stop = threading.Event()
        errors: list[BaseException] = []

        def pusher() -> None:
            try:
                for i, layout in enumerate(layouts[1:], 1):
                    if stop.is_set():
                        return
                    skopeo.copy(f"oci:{layout}:v1", f"docker://{dist.host}/live/app:latest")
                    skopeo.copy(f"oci:{layout}:v1", f"docker://{dist.host}/live/r{i}:v1")
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        thread = threading.Thread(target=pusher)
        thread.start()
        ours = tmp_path / "ours"
        runs = []
        while thread.is_alive():  # as many runs as fit while the pushes go on
            runs.append(run_import(ours, str(dist.root)))
        thread.join()
        assert not errors, errors
        runs.append(run_import(ours, str(dist.root)))
        for report in runs:
            assert report["problems"] == [], report["problems"]
        assert len(runs) >= 2
        server = RegistryProcess(ours).start()
        try:
            refs = [(repo, tag) for repo in dist.catalog() for tag in dist.tags(repo)]
            assert len(refs) == 6
            assert_serves_the_same(dist.url, server.url, Filled(refs=refs))
        finally:
            server.stop()
    finally:
        dist.stop()
