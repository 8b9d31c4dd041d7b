"""One pull per client, checked against what upstream holds: the same digests, the
same layers, whichever registry (a plain upstream or the mirror) answered.

Each function pulls the way a user would and asserts the client ended up with
exactly the upstream image; they return what the client printed or recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.clients import images
from tests.clients.clitools import Podman, Skopeo
from tests.mirror.clients.harness import Containerd, Dockerd


def ctr_pull(containerd: Containerd, hosts_dir: Path, ref: str, top_digest: str,
             image: images.Image, *options: str) -> str:
    """``ctr images pull --hosts-dir``: the recorded digest is upstream's and every
    blob of ``image`` (the platform pulled) is in the content store, re-hashed here."""
    namespace, dump = containerd.pull(ref, hosts_dir, *options)
    assert containerd.image_digest(namespace, ref) == top_digest
    for digest in [image.digest, image.config_digest, *image.layer_digests]:
        assert containerd.content_digest(namespace, digest) == digest, digest
    return dump


def docker_pull(dockerd: Dockerd, ref: str, image: images.Image, top_digest: str) -> str:
    """``docker pull`` (Docker Hub name, so through ``registry-mirrors``), checked by
    what dockerd recorded: the repo digest, the image ID (config) and the diff IDs;
    then removed so the next pull starts from nothing on the client side."""
    out = dockerd.pull(ref)
    try:
        info = dockerd.inspect(ref)
        name = ref.rsplit(":", 1)[0]
        assert f"{name}@{top_digest}" in info["RepoDigests"], info["RepoDigests"]
        assert info["Id"] == image.config_digest
        assert info["RootFS"]["Layers"] == image.diff_ids
    finally:
        dockerd.remove(ref)
    return out


def podman_pull(podman: Podman, ref: str, image: images.Image, top_digest: str) -> str:
    """``podman pull`` of a docker.io name (the registries.conf mirror answers),
    checked by podman's own record, then removed."""
    image_id = podman.pull(ref)
    try:
        assert "sha256:" + image_id == image.config_digest
        info = podman.image(ref)
        assert info["Digest"] == top_digest
        assert info["RootFS"]["Layers"] == image.diff_ids
    finally:
        podman.run("rmi", "--force", ref)
    return image_id


def skopeo_pull(skopeo: Skopeo, src: str, dest: Path, top_digest: str,
                blobs: list[str], *options: str) -> None:
    """``skopeo copy docker://... oci:dest``: the layout names the same top digest and
    holds every expected blob, byte for byte (re-hashed)."""
    skopeo.run("copy", "--src-tls-verify=false", *options, src, f"oci:{dest}:pulled")
    index = json.loads((dest / "index.json").read_bytes())
    tops = [m["digest"] for m in index["manifests"]
            if m.get("annotations", {}).get(images.REF_NAME) == "pulled"]
    assert tops == [top_digest], index
    for digest in blobs:
        assert images.sha256(images.layout_blob(dest, digest)) == digest, digest
