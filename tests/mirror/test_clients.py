"""Real clients pulling through the mirror: skopeo by path prefix (the ns and
registry-mirrors clients, containerd and dockerd, are tested by mirror-clients)."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.clients import images
from tests.clients.clitools import Skopeo, write_client_config
from tests.mirror.support import upstream_requests


def test_skopeo_copies_through_the_mirror_by_prefix(tmp_path: Path, mirror, upstream,
                                                    upstream_log):
    skopeo = Skopeo(tmp_path / "home", write_client_config(tmp_path / "home"))
    salt = uuid.uuid4().hex[:12]
    multi = images.write_multiarch(tmp_path / "src", salt, tag="v1")
    name = f"team/skopeo{salt}"
    skopeo.copy(f"oci:{tmp_path / 'src'}:v1", f"docker://{upstream.host}/{name}:v1", "--all")
    # Through the mirror: the index, then one platform's image (children on demand).
    raw = skopeo.raw(f"docker://{mirror.host}/up/{name}:v1")
    assert raw == multi.index
    skopeo.copy(f"docker://{mirror.host}/up/{name}:v1", f"oci:{tmp_path / 'out'}:v1",
                "--override-arch", "arm64")
    manifest, body = images.read_layout_manifest(tmp_path / "out", "v1")
    image = multi.images["linux/arm64"]
    assert body == image.manifest
    for layer in image.layers:
        assert images.layout_blob(tmp_path / "out", layer.digest) == layer.blob
    # Again: all from the cache, by tag (within the TTL) and by digest.
    before = upstream_log.count("(GET|HEAD)", f"/v2/{name}/")
    blob_gets = upstream_requests(mirror, "up")
    skopeo.copy(f"docker://{mirror.host}/up/{name}:v1", f"oci:{tmp_path / 'again'}:v1",
                "--override-arch", "arm64")
    skopeo.copy(f"docker://{mirror.host}/up/{name}@{image.digest}",
                f"oci:{tmp_path / 'bydigest'}:v1")
    assert upstream_log.count("(GET|HEAD)", f"/v2/{name}/") == before
    assert upstream_requests(mirror, "up") == blob_gets
