"""skopeo (Debian's) pushes and pulls through nginx: every request may land on a
different instance, blob GETs are redirected to the S3 store, and what comes
back is byte for byte what was pushed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.clients import images
from tests.clients.clitools import Skopeo, docker_ref, write_client_config

BIG_LAYER = 12 << 20  # over one 8 MiB multipart part of the S3 driver


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    home = tmp_path_factory.mktemp("cluster-clients")
    return Skopeo(home, write_client_config(home))


@pytest.fixture
def salt() -> str:
    return uuid.uuid4().hex[:12]


def write_big_image(layout: Path, salt: str, tag: str) -> images.Image:
    """The usual three layers plus one of incompressible bytes bigger than a part."""
    base = images.build_image(salt)
    tar = images.make_tar([images.Entry("big.bin", images.pseudo_random(salt, BIG_LAYER))])
    big = images.Layer(tar=tar, blob=images.gzip_bytes(tar), created_by="COPY big.bin /")
    layers = [*base.layers, big]
    config = json.loads(base.config)
    config["rootfs"]["diff_ids"] = [layer.diff_id for layer in layers]
    config["history"].append({"created": images.CREATED, "created_by": big.created_by})
    config_bytes = images.canonical(config)
    manifest = images.canonical({
        "schemaVersion": 2,
        "mediaType": images.OCI_MANIFEST,
        "config": images.descriptor(images.OCI_CONFIG, config_bytes),
        "layers": [images.descriptor(images.OCI_LAYER_GZIP, layer.blob) for layer in layers],
    })
    image = images.Image(manifest, config_bytes, layers, {}, {}, [], base.platform)
    images.write_blobs(layout, image.blobs())
    images.write_layout(layout, {tag: images.descriptor(images.OCI_MANIFEST, manifest)})
    return image


def assert_layout_has(layout: Path, image: images.Image) -> None:
    for digest, data in image.blobs().items():
        assert images.layout_blob(layout, digest) == data, digest


def test_push_and_pull_a_multi_layer_image(skopeo, cluster, salt, tmp_path):
    source = tmp_path / "src"
    image = write_big_image(source, salt, "v1")
    repo = f"skopeo/{salt}"
    ref = docker_ref(cluster.host, repo, "v1")
    digestfile = tmp_path / "digest"
    skopeo.copy(f"oci:{source}:v1", ref, "--digestfile", str(digestfile))
    assert digestfile.read_text().strip() == image.digest
    assert skopeo.raw(ref) == image.manifest
    info = skopeo.inspect(ref)
    assert info["Layers"] == image.layer_digests
    assert info["RepoTags"] == ["v1"]

    back = tmp_path / "back"
    skopeo.copy(ref, f"oci:{back}:pulled")
    desc, manifest = images.read_layout_manifest(back, "pulled")
    assert (desc["digest"], manifest) == (image.digest, image.manifest)
    assert_layout_has(back, image)
    # Each instance, asked directly, serves the same image.
    for inst in cluster.instances:
        assert skopeo.raw(docker_ref(inst.host, repo, image.digest)) == image.manifest


def test_push_and_pull_a_multi_arch_index(skopeo, cluster, salt, tmp_path):
    source = tmp_path / "src"
    multi = images.write_multiarch(source, salt, tag="multi")
    repo = f"skopeo/{salt}"
    ref = docker_ref(cluster.host, repo, "multi")
    skopeo.copy(f"oci:{source}:multi", ref, "--all")
    assert skopeo.raw(ref) == multi.index
    for platform, image in multi.images.items():
        assert skopeo.raw(docker_ref(cluster.host, repo, image.digest)) == image.manifest
        arch = platform.split("/")[1]
        variant = ["--override-variant", "v8"] if arch == "arm64" else []
        config = skopeo.json("inspect", "--tls-verify=false", "--config",
                             "--override-arch", arch, *variant, ref)
        assert config["architecture"] == arch

    back = tmp_path / "back"
    skopeo.copy(ref, f"oci:{back}:multi", "--all")
    desc, index = images.read_layout_manifest(back, "multi")
    assert (desc["digest"], index) == (multi.digest, multi.index)
    for image in multi.images.values():
        assert_layout_has(back, image)
    assert skopeo.list_tags(f"docker://{cluster.host}/{repo}") == ["multi"]
