"""Tag history and restores on a live registry (GC grace 0, so GC frees what it may):
every change recorded with its actor; a moved or deleted tag (even a manifest deleted
by digest) restored after GC within the window, byte for byte; freed after it."""

from __future__ import annotations

import getpass
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.lifecycle_tags.support import (
    denied,
    history,
    push_image,
    start,
    tag_digest,
    write_config,
)
from tests.server import RegistryProcess

GC = {"grace_period_seconds": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    root = tmp_path_factory.mktemp("history")
    config = write_config(root, tags={"restore_window_seconds": 3600}, auth=False, gc=GC)
    registry = start(root, config)
    registry.config_path = config  # type: ignore[attr-defined]
    yield registry
    registry.stop()


@pytest.fixture
def s() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def gc(s: requests.Session, url: str) -> dict:
    r = s.post(f"{url}/v2/gc", params={"delete_untagged": "true"}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def restore(s: requests.Session, url: str, repo: str, tag: str, digest: str) -> requests.Response:
    return s.post(f"{url}/api/v1/repositories/{repo}/tags/{tag}/restore",
                  json={"digest": digest}, timeout=60)


def assert_pullable(s: requests.Session, url: str, repo: str, manifest: bytes,
                    blobs: dict[str, bytes], ref: str) -> None:
    r = s.get(f"{url}/v2/{repo}/manifests/{ref}",
              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=60)
    assert r.status_code == 200 and r.content == manifest
    for digest, data in blobs.items():
        r = s.get(f"{url}/v2/{repo}/blobs/{digest}", timeout=60)
        assert r.status_code == 200 and r.content == data, digest


def test_push_move_delete_and_restore_are_recorded_with_their_actor(server, s, repo):
    url = server.url
    a, _, _ = push_image(s, url, repo, "t")
    b, _, _ = push_image(s, url, repo, "t")
    assert s.delete(f"{url}/v2/{repo}/manifests/t").status_code == 202
    r = restore(s, url, repo, "t", a)
    assert r.status_code == 200, r.text
    assert r.json() == {"repository": repo, "tag": "t", "digest": a, "previous": None,
                        "changed": True}
    found = history(s, url, repo, "t")
    got = [(e["action"], e["previous_digest"], e["digest"]) for e in found["entries"]]
    assert got == [("restore", None, a), ("delete", b, None), ("move", a, b), ("push", None, a)]
    for entry in found["entries"]:
        assert entry["actor_kind"] == "anonymous" and entry["actor_address"] == "127.0.0.1"
        assert len(entry["request_id"]) == 32
    assert [x["digest"] for x in found["restorable"]] == [a, b]
    assert tag_digest(s, url, repo, "t") == a
    restores = [line for line in s.get(f"{url}/metrics").text.splitlines()
                if line.startswith("registry_tag_restores_total ")]
    assert restores and float(restores[0].split()[1]) >= 1, restores
    whole = s.get(f"{url}/api/v1/repositories/{repo}/tag-history", params={"limit": 3}).json()
    assert [(e["tag"], e["action"]) for e in whole["entries"]] == [
        ("t", "restore"), ("t", "delete"), ("t", "move")]
    # restoring where it already points changes nothing and records nothing
    r = restore(s, url, repo, "t", a)
    assert r.status_code == 200 and r.json()["changed"] is False
    assert len(history(s, url, repo, "t")["entries"]) == 4


def test_restore_after_gc_with_delete_untagged_is_byte_identical(server, s, repo):
    url = server.url
    a, manifest_a, blobs_a = push_image(s, url, repo, "t", layers=2)
    push_image(s, url, repo, "t")  # a is untagged now
    gc(s, url)
    assert_pullable(s, url, repo, manifest_a, blobs_a, a)
    assert restore(s, url, repo, "t", a).status_code == 200
    assert_pullable(s, url, repo, manifest_a, blobs_a, "t")


def test_a_manifest_deleted_by_digest_is_restorable_after_gc(server, s, repo):
    url = server.url
    a, manifest_a, blobs_a = push_image(s, url, repo, "t", layers=2)
    assert s.delete(f"{url}/v2/{repo}/manifests/{a}").status_code == 202
    assert tag_digest(s, url, repo, "t") is None
    assert s.get(f"{url}/v2/{repo}/manifests/{a}").status_code == 404  # gone from /v2
    gc(s, url)
    for digest, data in blobs_a.items():  # kept for the restore
        assert s.get(f"{url}/v2/{repo}/blobs/{digest}").content == data
    entry = history(s, url, repo, "t")["entries"][0]
    assert (entry["action"], entry["previous_digest"]) == ("delete", a)
    r = restore(s, url, repo, "t", a)
    assert r.status_code == 200, r.text
    assert_pullable(s, url, repo, manifest_a, blobs_a, "t")
    assert_pullable(s, url, repo, manifest_a, blobs_a, a)


def test_only_digests_the_tag_named_can_be_restored(server, s, repo):
    url = server.url
    a, _, _ = push_image(s, url, repo, "t")
    other, _, _ = push_image(s, url, repo, "u")
    r = restore(s, url, repo, "t", other)
    assert r.status_code == 404 and r.json()["code"] == "manifest_not_found", r.text
    assert "restore window" in r.json()["detail"]
    assert restore(s, url, repo, "t", "sha256:zz").status_code == 400
    assert restore(s, url, "no/such-repo", "t", a).status_code == 404
    assert tag_digest(s, url, repo, "t") == a


def test_a_restore_respects_immutable_rules(server, s, repo):
    url = server.url
    a, _, _ = push_image(s, url, repo, "keep")
    b, _, _ = push_image(s, url, repo, "keep")
    r = s.post(f"{url}/api/v1/tag-rules", json={"kind": "immutable", "repositories": repo,
                                                 "tags": "keep"})
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    try:
        r = restore(s, url, repo, "keep", a)
        assert r.status_code == 403 and "immutable" in r.json()["detail"], r.text
        assert tag_digest(s, url, repo, "keep") == b
        denied(s.delete(f"{url}/v2/{repo}/manifests/keep"), "immutable")
    finally:
        assert s.delete(f"{url}/api/v1/tag-rules/{rule_id}").status_code == 204


def test_the_cli_restores_and_is_named_in_the_history(server, s, repo):
    url = server.url
    a, manifest_a, blobs_a = push_image(s, url, repo, "t")
    push_image(s, url, repo, "t")
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "tag", "restore", f"{repo}:t", a,
         "--config", str(server.config_path), "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"restored {repo}:t to {a}" in out.stdout
    assert_pullable(s, url, repo, manifest_a, blobs_a, "t")
    entry = history(s, url, repo, "t")["entries"][0]
    assert (entry["action"], entry["actor_kind"], entry["actor_name"]) == (
        "restore", "system", f"cli:{getpass.getuser()}")
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "tag", "restore", f"{repo}:t", "sha256:" + "0" * 64,
         "--config", str(server.config_path), "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "MANIFEST_UNKNOWN" in out.stderr


def test_after_the_window_gc_frees_them(tmp_path: Path, s):
    window = 2.0
    config = write_config(tmp_path, tags={"restore_window_seconds": window,
                                          "history_keep_seconds": window}, auth=False, gc=GC)
    server = start(tmp_path, config, workers=1)
    try:
        url, repo = server.url, "app/window"
        a, _, blobs_a = push_image(s, url, repo, "t")
        b, _, blobs_b = push_image(s, url, repo, "t")
        assert s.delete(f"{url}/v2/{repo}/manifests/{b}").status_code == 202
        gc(s, url)  # within the window: both kept
        for digest in (*blobs_a, *blobs_b):
            assert s.get(f"{url}/v2/{repo}/blobs/{digest}").status_code == 200
        last_change = history(s, url, repo, "t")["entries"][0]["at"]
        while time.time() <= last_change + window + 0.5:  # the window has to pass
            time.sleep(0.2)
        r = s.post(f"{url}/v2/gc", params={"delete_untagged": "true", "dry_run": "true"})
        dry = r.json()
        result = gc(s, url)
        assert result["manifests_deleted"] == 1  # a; b was deleted already, its copy dropped
        assert result["blobs_deleted"] == len(blobs_a) + len(blobs_b)
        assert (dry["manifests_deleted"], dry["blobs_deleted"], dry["bytes_freed"]) == (
            result["manifests_deleted"], result["blobs_deleted"], result["bytes_freed"])
        for digest in (*blobs_a, *blobs_b):
            assert s.get(f"{url}/v2/{repo}/blobs/{digest}").status_code == 404
        assert restore(s, url, repo, "t", a).status_code == 404
        assert history(s, url, repo, "t")["entries"] == []  # older than history_keep_seconds
    finally:
        server.stop()
