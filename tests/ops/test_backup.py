"""`ociregistry backup` / `restore` on the embedded default (SQLite + filesystem).

Real servers and the real command line; the stress test backs up while pushes
and GC (grace period 0, untagged manifests deleted) run from threads, restores
into a fresh data directory and pulls every tag pushed before the backup
started. The GC race (a sweep between the snapshot and the blob copy) is
forced in test_gc_between_snapshot_and_copy_keeps_the_snapshots_blobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.api import test_gc_concurrency as race
from tests.helpers import make_image, push_blob, put_manifest
from tests.ops.conftest import cli
from tests.server import RegistryProcess

# No grace, no restore window: the unreferenced go at the next sweep (unless a backup holds off).
NO_GRACE = {
    "OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0",
    "OCIREGISTRY_TAGS__RESTORE_WINDOW_SECONDS": "0",
}
TIMEOUT = 600


def blob_file(root: Path, digest: str) -> Path:
    algorithm, hexpart = digest.split(":")
    return root / "blobs" / algorithm / hexpart[:2] / hexpart


def backup(data: Path, dest: Path, *args: str) -> dict:
    result = cli("backup", "--data-dir", str(data), str(dest), "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "snapshot: 1/1" in result.stderr  # progress, like the other operations
    return json.loads(result.stdout.strip().splitlines()[-1])


def restore(src: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    return cli("restore", "--data-dir", str(data), str(src), *args)


def check_clean(data: Path) -> None:
    result = cli("check", "--data-dir", str(data))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 problem(s)" in result.stdout, result.stdout


def assert_pulls(url: str, pushed: race.Pushed) -> None:
    """Manifest bytes and digest by tag, and every blob's bytes, as pushed."""
    r = requests.get(f"{url}/v2/{pushed.repo}/manifests/{pushed.tag}",
                     headers={"Accept": pushed.media_type}, timeout=60)
    assert r.status_code == 200, (pushed.repo, pushed.tag, r.text)
    assert r.content == pushed.body
    assert r.headers["Docker-Content-Digest"] == pushed.digest
    blobs = list(pushed.blobs)
    for child_digest, child_body, child_blobs in pushed.children:
        r = requests.get(f"{url}/v2/{pushed.repo}/manifests/{child_digest}",
                         headers={"Accept": race.OCI_MANIFEST}, timeout=60)
        assert r.status_code == 200 and r.content == child_body, r.text
        blobs += child_blobs
    for digest in blobs:
        r = requests.get(f"{url}/v2/{pushed.repo}/blobs/{digest}", timeout=60)
        assert r.status_code == 200, (digest, r.text)
        assert "sha256:" + hashlib.sha256(r.content).hexdigest() == digest


def push_images(url: str, repo: str, count: int) -> list[race.Pushed]:
    session = requests.Session()
    pushed = []
    for n in range(count):
        for _attempt in range(race.ATTEMPTS):  # a concurrent sweep may win: push again
            image = race.push_once(session, url, repo, n)
            if image is not None:
                pushed.append(image)
                break
        else:
            raise AssertionError(f"{repo}:v{n} lost the race {race.ATTEMPTS} times")
    return pushed


def test_backup_during_pushes_and_gc_restores_every_tag_committed_before(tmp_path):
    data = tmp_path / "data"
    server = RegistryProcess(data, env=NO_GRACE).start()
    try:
        committed = []
        for worker in range(3):
            committed += push_images(server.url, f"before/repo{worker}", 4)
        outcome = race.Outcome()
        done = threading.Event()
        threads = [threading.Thread(target=race.pusher, args=(server.url, 10 + w, outcome))
                   for w in range(2)]
        threads.append(threading.Thread(target=race.collector,
                                        args=(server.url, done, outcome)))
        for thread in threads:
            thread.start()
        # Back up once pushes and sweeps are both under way.
        deadline = time.monotonic() + TIMEOUT
        while len(outcome.gc_runs) < 2 or len(outcome.pushed) < 2:
            assert time.monotonic() < deadline and not outcome.errors, outcome.errors
            time.sleep(0.1)
        first = backup(data, tmp_path / "backup")
        second = backup(data, tmp_path / "backup")  # incremental, still under load
        for thread in threads[:-1]:
            thread.join(TIMEOUT)
        done.set()
        threads[-1].join(TIMEOUT)
        assert not outcome.errors, outcome.errors
        assert len(outcome.gc_runs) >= 2
    finally:
        server.stop()
    assert first["blobs"] > 0 and second["already_present"] > 0
    restored = tmp_path / "restored"
    result = restore(tmp_path / "backup", restored)
    assert result.returncode == 0, result.stdout + result.stderr
    check_clean(restored)
    server = RegistryProcess(restored).start()
    try:
        for pushed in committed:
            assert_pulls(server.url, pushed)
    finally:
        server.stop()


def test_gc_between_snapshot_and_copy_keeps_the_snapshots_blobs(tmp_path):
    """The sweep runs right after the snapshot (from the backup's own progress
    callback): with the backup lease held it deletes nothing the snapshot lists."""
    from ociregistry.backup.take import take_backup
    from ociregistry.config import load_settings
    from ociregistry.runtime import build_runtime

    data = tmp_path / "data"
    server = RegistryProcess(data, env=NO_GRACE).start()
    try:
        doomed = make_image(server.url, "app/doomed", layers=2)
        r = put_manifest(server.url, "app/doomed", "v1", doomed)
        digest = r.headers["Docker-Content-Digest"]
        orphan = push_blob(server.url, "app/doomed", os.urandom(4096))
        kept = make_image(server.url, "app/kept", layers=1)
        assert put_manifest(server.url, "app/kept", "v1", kept).status_code == 201
        sweeps = []

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "snapshot" and done == 1:  # snapshot taken, nothing copied yet
                r = requests.delete(f"{server.url}/v2/app/doomed/manifests/{digest}")
                assert r.status_code == 202, r.text
                r = requests.post(f"{server.url}/v2/gc", params={"delete_untagged": "true"})
                assert r.status_code == 200, r.text
                sweeps.append(r.json())

        runtime = build_runtime(load_settings(None, {"data_dir": str(data)}))
        result = take_backup(runtime, str(tmp_path / "backup"), progress)
        runtime.metadata.dispose()
        assert sweeps and sweeps[0]["blobs_deleted"] == 0, sweeps
        layers = [doomed["config"]["digest"], orphan] + [x["digest"] for x in doomed["layers"]]
        for blob in layers:
            assert blob_file(tmp_path / "backup", blob).is_file()
        assert result.copied == result.blobs
        # The lease is gone with the backup: the same sweep now frees them.
        r = requests.post(f"{server.url}/v2/gc")
        assert r.json()["blobs_deleted"] == len(layers), r.json()
    finally:
        server.stop()
    restored = tmp_path / "restored"
    assert restore(tmp_path / "backup", restored).returncode == 0
    check_clean(restored)


@pytest.fixture
def populated(tmp_path):
    """A stopped registry with two tagged images; (data dir, {repo: manifest digest})."""
    data = tmp_path / "data"
    server = RegistryProcess(data).start()
    tags = {}
    for repo in ("app/one", "app/two"):
        r = put_manifest(server.url, repo, "v1", make_image(server.url, repo, layers=2))
        tags[repo] = r.headers["Docker-Content-Digest"]
    server.stop()
    return data, tags


def add_image(data: Path, repo: str) -> dict:
    server = RegistryProcess(data).start()
    try:
        manifest = make_image(server.url, repo, layers=2)
        assert put_manifest(server.url, repo, "v1", manifest).status_code == 201
    finally:
        server.stop()
    return manifest


def test_second_backup_copies_only_new_blobs(populated, tmp_path):
    data, _tags = populated
    dest = tmp_path / "backup"
    first = backup(data, dest)
    assert first["copied"] == first["blobs"] == 6
    old = {p: p.stat().st_mtime_ns for p in (dest / "blobs").rglob("*") if p.is_file()}
    add_image(data, "app/three")
    second = backup(data, dest)
    assert second["blobs"] == 9 and second["copied"] == 3 and second["already_present"] == 6
    assert {p: p.stat().st_mtime_ns for p in old} == old  # not rewritten
    assert len(list((dest / "snapshots").iterdir())) == 1  # the previous one replaced


def wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill_backup_mid_copy(data: Path, dest: Path, digest: str) -> None:
    """Run a backup that blocks while copying ``digest`` (its file made a FIFO), SIGKILL it."""
    path = blob_file(data, digest)
    real = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ociregistry", "backup", "--data-dir", str(data), str(dest)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = blob_file(dest, digest).name + ".partial-"
    try:
        wait_for(lambda: (dest / "blobs").is_dir() and any(
            p.name.startswith(partial) for p in (dest / "blobs").rglob("*")), "the copy")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        path.unlink()
        path.write_bytes(real)


def test_a_killed_backup_is_refused_and_the_previous_one_still_restores(populated, tmp_path):
    data, tags = populated
    # A first backup killed midway: nothing to restore.
    lone = tmp_path / "killed"
    layer = next(p for p in (data / "blobs").rglob("*") if p.is_file())
    kill_backup_mid_copy(data, lone, f"sha256:{layer.name}")
    assert (lone / "in-progress").exists() and not (lone / "backup.json").exists()
    result = restore(lone, tmp_path / "nothing")
    assert result.returncode == 1
    assert "no complete backup" in result.stderr and "interrupted" in result.stderr
    assert not (tmp_path / "nothing" / "registry.db").exists()
    # A complete backup, then a later one killed: the complete one restores.
    dest = tmp_path / "backup"
    backup(data, dest)
    manifest = add_image(data, "app/three")
    kill_backup_mid_copy(data, dest, manifest["layers"][0]["digest"])
    restored = tmp_path / "restored"
    result = restore(dest, restored)
    assert result.returncode == 0, result.stderr
    check_clean(restored)
    server = RegistryProcess(restored).start()
    try:
        for repo, digest in tags.items():
            r = requests.head(f"{server.url}/v2/{repo}/manifests/v1",
                              headers={"Accept": race.OCI_MANIFEST})
            assert r.headers["Docker-Content-Digest"] == digest
        assert requests.get(f"{server.url}/v2/app/three/tags/list").status_code == 404
    finally:
        server.stop()
    # The killed run's lease does not hold the next backup up, which cleans its leftovers.
    after = backup(data, dest)
    assert after["blobs"] == 9
    assert not (dest / "in-progress").exists()
    assert not [p for p in (dest / "blobs").rglob("*.partial-*")]


def test_restore_refuses_a_tampered_blob_or_snapshot(populated, tmp_path):
    data, tags = populated
    dest = tmp_path / "backup"
    backup(data, dest)
    victim = next(p for p in (dest / "blobs").rglob("*") if p.is_file())
    original = victim.read_bytes()
    victim.write_bytes(bytes([original[0] ^ 1]) + original[1:])  # same size, other bytes
    result = restore(dest, tmp_path / "restored")
    assert result.returncode == 1
    assert "damaged" in result.stderr and victim.name in result.stderr
    assert not (tmp_path / "restored" / "registry.db").exists()
    victim.write_bytes(original)
    snapshot = next((dest / "snapshots").iterdir())
    with open(snapshot, "r+b") as f:
        f.seek(200)
        f.write(b"\x00" * 8 if f.read(8) != b"\x00" * 8 else b"\x01" * 8)
    result = restore(dest, tmp_path / "restored")
    assert result.returncode == 1 and "does not match its recorded digest" in result.stderr


def test_restore_refuses_a_registry_in_place_unless_forced(populated, tmp_path):
    data, tags = populated
    dest = tmp_path / "backup"
    backup(data, dest)
    add_image(data, "app/three")
    result = restore(dest, data)
    assert result.returncode == 1 and "--force" in result.stderr
    result = restore(dest, data, "--force")
    assert result.returncode == 0, result.stderr
    assert "3 other files removed" in result.stdout  # app/three's blobs
    check_clean(data)


def test_backup_refuses_a_corrupt_blob_and_records_nothing(populated, tmp_path):
    data, _tags = populated
    victim = next(p for p in (data / "blobs").rglob("*") if p.is_file())
    original = victim.read_bytes()
    victim.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    dest = tmp_path / "backup"
    result = cli("backup", "--data-dir", str(data), str(dest))
    assert result.returncode == 1
    assert victim.name in result.stderr and "ociregistry check" in result.stderr
    assert not (dest / "backup.json").exists()
    assert not blob_file(dest, f"sha256:{victim.name}").exists()


def test_one_backup_at_a_time_and_backup_lease_runs_the_command(populated, tmp_path):
    from ociregistry.backup.lease import BackupLease
    from ociregistry.metadata.store import MetadataStore

    data, _tags = populated
    store = MetadataStore(f"sqlite:///{data / 'registry.db'}")
    try:
        with BackupLease(store):  # held by this (live) process
            result = cli("backup", "--data-dir", str(data), str(tmp_path / "backup"))
            assert result.returncode == 1 and "another backup" in result.stderr
            result = cli("backup-lease", "--data-dir", str(data), "--", "true")
            assert result.returncode == 3
        result = cli("backup-lease", "--data-dir", str(data), "--", "sh", "-c", "exit 7")
        assert result.returncode == 7 and "backup lease held" in result.stderr
        assert store.try_lock("backup", "probe", ttl=1)  # released when the command ended
    finally:
        store.dispose()


def test_backup_and_restore_keep_out_of_the_registrys_data(populated, tmp_path):
    data, _tags = populated
    for dest in (data, data / "backup", tmp_path):
        result = cli("backup", "--data-dir", str(data), str(dest))
        assert result.returncode == 1 and "overlaps the registry's data" in result.stderr
    backup(data, tmp_path / "backup")
    result = restore(tmp_path / "backup", tmp_path / "backup" / "data")
    assert result.returncode == 1 and "overlaps" in result.stderr


def test_restore_refuses_a_backup_from_a_newer_schema(populated, tmp_path):
    data, _tags = populated
    dest = tmp_path / "backup"
    backup(data, dest)
    marker = json.loads((dest / "backup.json").read_text())
    marker["schema_revision"] = "9999"
    (dest / "backup.json").write_text(json.dumps(marker))
    result = restore(dest, tmp_path / "restored")
    assert result.returncode == 1 and "newer than this version" in result.stderr
