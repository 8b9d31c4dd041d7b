"""Pre-fetch building blocks (mirror/warm.py) against a real upstream, in process."""

from __future__ import annotations

import json

from ociregistry.config import load_settings
from ociregistry.mirror.outcomes import upstream_tags
from ociregistry.mirror.warm import route_for, warm
from ociregistry.runtime import build_runtime
from tests.helpers import OCI_MANIFEST, put_manifest
from tests.mirror.test_pull_through import OCI_INDEX, get, push_image


def test_warm_caches_every_platform_and_then_fetches_nothing(tmp_path, upstream, name):
    children = []
    for arch in ("amd64", "arm64"):
        _, digest = push_image(upstream.url, name, f"only-{arch}", layers=2)
        size = len(get(upstream.url, f"{name}/manifests/{digest}").content)
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                         "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    assert put_manifest(upstream.url, name, "multi", index.encode(), OCI_INDEX).status_code == 201
    runtime = build_runtime(load_settings(environ={}, overrides={
        "data_dir": str(tmp_path / "data"),
        "mirror": {"upstreams": [{"name": "up", "url": upstream.url, "tag_ttl": "1h"}]}}),
        migrate=True)
    route = route_for(runtime.mirror, "up", name)
    assert sorted(upstream_tags(runtime.mirror, route)) == ["multi", "only-amd64", "only-arm64"]
    first = warm(runtime.mirror, route, "multi")
    assert (first.manifests, first.blobs) == (3, 6)
    assert first.fetched_bytes > 0 and first.results == {"miss": 3}
    for child in children:
        row = runtime.metadata.get_manifest(f"up/{name}", child["digest"], True)
        assert row is not None
    again = warm(runtime.mirror, route, "multi")
    assert again.fetched_bytes == 0 and again.results == {"hit": 3}
