"""The pull-through cache on the cluster (three instances, PostgreSQL + S3 behind
nginx): three instances missing the same blob and the same tag at once fetch
each from upstream once; then every instance serves them from the shared cache."""

from __future__ import annotations

import os
import threading
import uuid

import requests

from tests.helpers import make_image, push_blob, put_manifest, sha256
from tests.mirror.support import AccessLog, metric
from tests.server import RegistryProcess

ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def upstream_gets(cluster, kind: str) -> float:
    return sum(metric(instance, "registry_mirror_upstream_requests_total", upstream="up",
                      kind=kind, method="GET") for instance in cluster.instances)


def at_once(urls: list[str], headers: dict | None = None) -> list[tuple[int, str, str]]:
    results: list[tuple[int, str, str]] = []
    barrier = threading.Barrier(len(urls))

    def fetch(url: str) -> None:
        barrier.wait()
        r = requests.get(url, headers=headers, timeout=300)
        results.append((r.status_code, sha256(r.content),
                        r.headers.get("Docker-Content-Digest", "")))

    threads = [threading.Thread(target=fetch, args=(url,)) for url in urls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_three_instances_miss_the_same_blob_and_tag_at_once(make_cluster, tmp_path):
    (tmp_path / "up").mkdir()
    upstream = RegistryProcess(tmp_path / "up" / "data", workers=1).start()
    try:
        cluster = make_cluster(settings={"mirror": {"upstreams": [
            {"name": "up", "url": upstream.url, "tag_ttl": "1h"}]}})
        name = f"team/cluster{uuid.uuid4().hex[:8]}"
        data = os.urandom(24 << 20)
        digest = push_blob(upstream.url, name, data)
        urls = [f"{i.url}/v2/up/{name}/blobs/{digest}" for i in cluster.instances]
        blob_before = upstream_gets(cluster, "blob")
        results = at_once(urls + urls)  # two clients per instance
        # (a hit on S3 is a redirect to the store, whose answer has no digest header)
        assert [(status, got) for status, got, _ in results] == [(200, digest)] * 6
        assert upstream_gets(cluster, "blob") - blob_before == 1

        manifest = make_image(upstream.url, name, layers=1)
        r = put_manifest(upstream.url, name, "v1", manifest)
        assert r.status_code == 201, r.text
        manifest_digest = r.headers["Docker-Content-Digest"]
        log = AccessLog(upstream)
        urls = [f"{i.url}/v2/up/{name}/manifests/v1" for i in cluster.instances]
        results = at_once(urls + urls, ACCEPT)
        assert {(status, got) for status, _, got in results} == {(200, manifest_digest)}
        assert log.count("GET", f"/v2/{name}/manifests/v1") == 1
        # Through nginx, any instance: all from the shared cache now.
        for _ in range(3):
            r = requests.get(f"{cluster.url}/v2/up/{name}/manifests/v1", headers=ACCEPT,
                             timeout=60)
            assert r.headers["X-Registry-Mirror"] == "hit"
        assert log.count("(GET|HEAD)", f"/v2/{name}/manifests/") == 1
        r = requests.get(f"{cluster.url}/v2/up/{name}/blobs/{digest}", timeout=300)
        assert r.status_code == 200 and sha256(r.content) == digest
        assert upstream_gets(cluster, "blob") - blob_before == 1
    finally:
        upstream.stop()
