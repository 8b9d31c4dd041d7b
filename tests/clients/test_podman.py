"""podman (Debian's, isolated vfs storage) against the real registry, with skopeo."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from tests.clients import images
from tests.clients.clitools import docker_ref

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"


def check_rootfs(podman, ref: str, image: images.Image) -> None:
    """The files podman unpacked are the image's, whiteouts applied."""
    root = Path(podman.run("image", "mount", ref).stdout.decode().strip())
    try:
        for path, data in image.files.items():
            assert (root / path).read_bytes() == data, path
        for path, target in image.symlinks.items():
            assert os.readlink(root / path) == target, path
        for path in image.removed:
            assert not (root / path).exists(), path
        assert os.access(root / "app/run.sh", os.X_OK)
    finally:
        podman.run("image", "unmount", ref)


def test_podman_pulls_what_skopeo_pushed(skopeo, podman, registry, repo, oci_image):
    skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, "v1"))
    image = oci_image.image
    name = f"{registry.host}/{repo}"

    image_id = podman.pull(f"{name}:v1")
    assert image_id == image.config_digest.removeprefix("sha256:")
    info = podman.image(f"{name}:v1")
    assert info["Digest"] == image.digest
    assert f"{name}@{image.digest}" in info["RepoDigests"]
    assert info["RootFS"]["Layers"] == image.diff_ids
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Config"]["Entrypoint"] == ["/app/run.sh"]
    check_rootfs(podman, f"{name}:v1", image)

    assert podman.pull(f"{name}@{image.digest}") == image_id


def test_podman_pushes_and_skopeo_pulls(skopeo, podman, registry, repo, oci_image, tmp_path):
    image = oci_image.image
    skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, "v1"))
    podman.pull(f"{registry.host}/{repo}:v1")
    target = f"{registry.host}/{repo}-podman:v2"
    digest = podman.push(f"{registry.host}/{repo}:v1", target, tmp_path / "digest")

    ref = f"docker://{target}"
    info = skopeo.inspect(ref)
    assert info["Digest"] == digest
    assert info["Labels"] == json.loads(image.config)["config"]["Labels"]
    assert skopeo.config(ref)["rootfs"]["diff_ids"] == image.diff_ids

    out = tmp_path / "pulled"
    skopeo.copy(ref, f"dir:{out}")
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert images.sha256((out / "manifest.json").read_bytes()) == digest
    for layer, expected in zip(manifest["layers"], image.layers, strict=True):
        blob = (out / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert images.sha256(blob) == layer["digest"]
        assert gzip.decompress(blob) == expected.tar


def test_podman_pushes_docker_format(skopeo, podman, registry, repo, oci_image, tmp_path):
    skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, "v1"))
    podman.pull(f"{registry.host}/{repo}:v1")
    target = f"{registry.host}/{repo}:docker"
    digest = podman.push(f"{registry.host}/{repo}:v1", target, tmp_path / "digest",
                         "--format", "v2s2")
    raw = skopeo.raw(f"docker://{target}")
    assert images.sha256(raw) == digest
    assert json.loads(raw)["mediaType"] == DOCKER_V2S2
    assert skopeo.config(f"docker://{target}")["rootfs"]["diff_ids"] == oci_image.image.diff_ids


def test_podman_pulls_each_platform_of_an_index(skopeo, podman, registry, repo, oci_index):
    skopeo.copy(oci_index.ref, docker_ref(registry.host, repo, "multi"), "--all")
    name = f"{registry.host}/{repo}:multi"
    for platform, image in oci_index.index.images.items():
        variant = "/v8" if platform.endswith("arm64") else ""
        image_id = podman.pull(name, "--platform", platform + variant)
        assert image_id == image.config_digest.removeprefix("sha256:"), platform
        info = podman.image(image_id)
        assert info["Architecture"] == platform.split("/")[1]
        assert info["RootFS"]["Layers"] == image.diff_ids
        assert f"{registry.host}/{repo}@{image.digest}" in info["RepoDigests"]


def test_podman_manifest_list_push(skopeo, podman, registry, repo, salt, tmp_path):
    built = {
        "amd64": images.write_image(tmp_path / "amd64", salt, "v1", "amd64"),
        "arm64": images.write_image(tmp_path / "arm64", salt, "v1", "arm64", "v8"),
    }
    podman.run("manifest", "create", "localhost/multi:v1")
    for arch in built:
        podman.run("manifest", "add", "localhost/multi:v1", f"oci:{tmp_path / arch}:v1")
    target = f"docker://{registry.host}/{repo}:list"
    podman.run("manifest", "push", "--all", "--tls-verify=false", "localhost/multi:v1", target)

    listing = json.loads(skopeo.raw(target))
    assert listing["mediaType"] == images.OCI_INDEX
    platforms = {m["platform"]["architecture"]: m for m in listing["manifests"]}
    assert sorted(platforms) == ["amd64", "arm64"]
    assert platforms["arm64"]["platform"].get("variant") == "v8"
    for arch, image in built.items():
        assert platforms[arch]["digest"] == image.digest, arch  # pushed unchanged
        ref = docker_ref(registry.host, repo, image.digest)
        assert skopeo.config(ref)["rootfs"]["diff_ids"] == image.diff_ids, arch
        layers = [layer["digest"] for layer in json.loads(skopeo.raw(ref))["layers"]]
        assert layers == image.layer_digests, arch
