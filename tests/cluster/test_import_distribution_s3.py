"""`ociregistry import distribution s3://bucket/prefix` into the cluster (PostgreSQL + S3).

A real Distribution 2.8.2 stores in SeaweedFS through its own s3 driver and is
filled by skopeo; the import reads that bucket layout (endpoint and credentials
from the cluster's own storage.s3 settings, then from flags) and copies the
blobs through this registry's S3 storage. Every tag then pulls from the cluster,
behind nginx, byte-identical to what Distribution serves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from ociregistry.importer.sources import S3Source, SourceError
from tests.auth.support import PASSWORDS, RULES, write_htpasswd
from tests.clients.clitools import Skopeo, write_client_config
from tests.cluster.s3 import REGION, SeaweedFS, aws_free_environ
from tests.distribution import V2, Distribution, assert_serves_the_same, fill, plant_broken

PREFIX = "dist"
ADMIN = ("root", PASSWORDS["root"])


def run_import(cluster, source: str, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "ociregistry", "import", "distribution",
         "--config", str(cluster.config), "--data-dir", str(cluster.base / "import-data"),
         source, "--json", *extra],
        capture_output=True, text=True, timeout=600,
        env={**aws_free_environ(), **cluster.env},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_from_distribution_on_s3(make_cluster, seaweedfs: SeaweedFS, s3_bucket: str,
                                        tmp_path: Path):
    dist = Distribution(tmp_path, s3={
        "accesskey": seaweedfs.access_key, "secretkey": seaweedfs.secret_key,
        "region": REGION, "regionendpoint": seaweedfs.endpoint_url, "bucket": s3_bucket,
        "rootdirectory": f"/{PREFIX}", "secure": False, "v4auth": True,
    }).start()
    try:
        home = tmp_path / "clients"
        home.mkdir()
        skopeo = Skopeo(home, write_client_config(home))
        filled = fill(dist, skopeo, tmp_path / "layouts", uuid.uuid4().hex[:10])
        client = seaweedfs.client()

        def put(rel: str, data: bytes) -> None:
            client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{V2}/{rel}", Body=data)

        plant_broken(put, filled)
        auth = {"htpasswd": str(write_htpasswd(tmp_path / "htpasswd")), "rules": RULES}
        cluster = make_cluster(settings={"auth": auth})
        source = f"s3://{s3_bucket}/{PREFIX}"
        report = run_import(cluster, source)  # endpoint and keys: the cluster's storage.s3
        assert report["blobs_copied"] > 0 and report["manifests_imported"] >= 7
        kinds = {(p["kind"], p["path"].split(f"/{V2}/", 1)[-1]) for p in report["problems"]}
        assert ("missing-blob", filled.broken["missing-blob"]) in kinds
        assert ("empty-link", filled.broken["empty-link"]) in kinds
        assert all(p["path"].startswith(f"s3://{s3_bucket}/{PREFIX}/{V2}/")
                   for p in report["problems"])
        assert_serves_the_same(dist.url, cluster.url, filled, auth=ADMIN)

        # Once more, with the source named by flags: nothing is copied again.
        again = run_import(
            cluster, source, "--s3-endpoint-url", seaweedfs.endpoint_url,
            "--s3-access-key", seaweedfs.access_key, "--s3-secret-key", seaweedfs.secret_key,
            "--s3-region", REGION,
        )
        assert again["blobs_copied"] == 0 and again["manifests_imported"] == 0
        assert again["manifests_present"] == report["manifests_imported"]
        # Both runs are visible through the management API, from any instance.
        runs = requests.get(f"{cluster.url}/api/v1/admin/imports", timeout=60,
                            auth=ADMIN).json()["items"]
        mine = [r for r in runs if r["source"] == source]
        assert [r["state"] for r in mine] == ["finished", "finished"]
        assert mine[1]["stats"]["manifests_imported"] == report["manifests_imported"]
        assert mine[0]["stats"]["blobs_copied"] == 0
    finally:
        dist.stop()


def test_s3_source_failures_read_as_file_errors(seaweedfs: SeaweedFS, s3_bucket: str):
    client = seaweedfs.client()
    client.put_object(Bucket=s3_bucket, Key=f"{PREFIX}/{V2}/repositories/a/_layers/x", Body=b"")
    source = S3Source(client, s3_bucket, PREFIX)
    assert list(source.repository_files()) == [("a/_layers/x", 0)]
    with pytest.raises(FileNotFoundError):
        source.read_repository_file("a/_manifests/tags/gone/current/link")
    with pytest.raises(FileNotFoundError):
        list(source.open_blob("sha256:" + "0" * 64))
    with pytest.raises(SourceError):
        S3Source(client, s3_bucket, "elsewhere")  # nothing under that prefix
    with pytest.raises(SourceError):
        S3Source(client, "no-such-bucket-" + uuid.uuid4().hex[:8], PREFIX)
    with pytest.raises(SourceError):
        S3Source(seaweedfs.client(secret_key="wrong"), s3_bucket, PREFIX)
