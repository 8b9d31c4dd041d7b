"""PostgreSQL + S3 backup as docs/backup.md says: database first (pg_dump), then the
bucket's blobs/ (a sync), both inside `ociregistry backup-lease`, taken while
images are pushed through nginx and GC (grace period 0, untagged manifests
deleted) sweeps on the instances. Between the dump and the copy a sweep is
forced; it must delete nothing the dump lists. Restored into a fresh database
and bucket, `restore --reconcile` then `check` pass, and every tag pushed
before the backup started pulls identically.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import yaml

from tests.api import test_gc_concurrency as race
from tests.cluster.pg import _bindir
from tests.cluster.s3 import aws_free_environ
from tests.cluster.topology import _without_aws_settings
from tests.ops.test_backup import assert_pulls, push_images
from tests.server import ROOT, RegistryProcess

TIMEOUT = 600
NO_GRACE = {"gc": {"grace_period_seconds": 0}}


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def cli(config: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args, "--config", str(config),
         "--data-dir", str(cwd / "cli-data")],
        env={**aws_free_environ(), "PYTHONPATH": str(ROOT)}, cwd=str(cwd),
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def collector(url: str, done: threading.Event, runs: list, errors: list) -> None:
    """Sweeps until done; a 409 is another sweep (the forced one) running."""
    session = requests.Session()
    n = 0
    while not done.is_set():
        n += 1
        r = session.post(f"{url}/v2/gc", params={"delete_untagged": "true"} if n % 2 else {},
                         timeout=TIMEOUT)
        if r.status_code == 200:
            runs.append(r.json())
        elif r.status_code != 409:
            errors.append(f"gc: {r.status_code} {r.text}")
            return


BACKUP_SCRIPT = """\
set -e
"$PG_BIN/pg_dump" --format=custom --file="$OUT/registry.dump" "$PGURL"
# A sweep between the two steps: with the lease held it must delete no blob.
"$PY" - "$GC_URL" "$OUT/forced-gc.json" <<'PY'
import sys, time, requests
while True:
    r = requests.post(sys.argv[1] + "/v2/gc", params={"delete_untagged": "true"}, timeout=600)
    if r.status_code != 409:
        break
    time.sleep(0.2)
r.raise_for_status()
open(sys.argv[2], "w").write(r.text)
PY
"$PY" -m tests.cluster.bucket_copy download "$ENDPOINT" "$BUCKET" "$PREFIX" "$OUT/bucket"
"""


def test_database_then_bucket_backup_during_pushes_and_gc_restores(
    make_cluster, postgres, seaweedfs, tmp_path
):
    cluster = make_cluster(settings=NO_GRACE)
    committed = []
    for worker in range(2):
        committed += push_images(cluster.url, f"before/repo{worker}", 3)
    out = tmp_path / "backup"
    out.mkdir()
    script = tmp_path / "backup.sh"
    script.write_text(BACKUP_SCRIPT)
    s3 = cluster.settings["storage"]["s3"]
    env = {
        **aws_free_environ(), "PYTHONPATH": str(ROOT), "PG_BIN": str(_bindir()),
        "OUT": str(out), "PGURL": libpq_url(cluster.database_url), "PY": sys.executable,
        "GC_URL": cluster.instances[1].url, "ENDPOINT": s3["endpoint_url"],
        "BUCKET": s3["bucket"], "PREFIX": s3["prefix"],
        "BUCKET_ACCESS_KEY": s3["access_key"], "BUCKET_SECRET_KEY": s3["secret_key"],
    }
    outcome = race.Outcome()
    done = threading.Event()
    runs: list = []
    errors: list = []
    pushers = [threading.Thread(target=race.pusher, args=(url, 10 + i, outcome))
               for i, url in enumerate([cluster.url, cluster.instances[0].url])]
    sweeper = threading.Thread(target=collector,
                               args=(cluster.instances[2].url, done, runs, errors))
    for thread in [*pushers, sweeper]:
        thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(runs) < 2 or len(outcome.pushed) < 2:
            assert time.monotonic() < deadline and not (errors or outcome.errors)
            time.sleep(0.1)
        result = subprocess.run(
            [sys.executable, "-m", "ociregistry", "backup-lease", "--config",
             str(cluster.config), "--data-dir", str(tmp_path / "cli-data"), "--",
             "sh", str(script)],
            env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=TIMEOUT)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        for thread in pushers:
            thread.join(TIMEOUT)
        done.set()
        sweeper.join(TIMEOUT)
    assert not errors and not outcome.errors, (errors, outcome.errors)
    forced = json.loads((out / "forced-gc.json").read_text())
    assert forced["blobs_deleted"] == 0, forced
    assert len(runs) >= 2

    # Restore into a fresh database and a fresh bucket.
    database = postgres.create_database()
    subprocess.run([str(_bindir() / "pg_restore"), "--no-owner", "--dbname",
                    libpq_url(database), str(out / "registry.dump")], check=True,
                   env=aws_free_environ(), capture_output=True, timeout=TIMEOUT)
    bucket = seaweedfs.create_bucket()
    try:
        subprocess.run(
            [sys.executable, "-m", "tests.cluster.bucket_copy", "upload", s3["endpoint_url"],
             bucket, s3["prefix"], str(out / "bucket")],
            env={**env}, cwd=str(ROOT), check=True, capture_output=True, timeout=TIMEOUT)
        settings = json.loads(json.dumps(cluster.settings))
        settings["database"]["url"] = database
        settings["storage"]["s3"]["bucket"] = bucket
        config = tmp_path / "restored.yml"
        config.write_text(yaml.safe_dump(settings))
        work = tmp_path / "restored"
        work.mkdir()
        result = cli(config, work, "restore", "--reconcile")
        assert result.returncode == 0, result.stdout + result.stderr
        result = cli(config, work, "check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert " 0 problem(s)" in result.stdout, result.stdout
        server = RegistryProcess(work / "data", config=config,
                                 env={"OCIREGISTRY_DATABASE__URL": database})
        with _without_aws_settings():
            server.start()
        try:
            for pushed in committed:
                assert_pulls(server.url, pushed)
        finally:
            server.stop()
    finally:
        seaweedfs.delete_bucket(bucket)


def test_backup_of_the_embedded_kind_refuses_postgresql(make_cluster, tmp_path):
    cluster = make_cluster(storage="filesystem")
    (tmp_path / "work").mkdir()
    result = cli(cluster.config, tmp_path / "work", "backup", str(tmp_path / "dest"))
    assert result.returncode == 1
    assert "backup-lease" in result.stderr and "docs/backup.md" in result.stderr
    assert not os.path.exists(tmp_path / "dest")


def test_the_lease_stops_blob_deletion_on_postgresql(pg_url):
    from ociregistry.metadata.store import MetadataStore
    from tests.unit.test_backup_lease import lease_blocks_deletion

    store = MetadataStore(pg_url)
    try:
        lease_blocks_deletion(store)
    finally:
        store.dispose()
