"""skopeo (Debian's) against the real registry: push, pull back, inspect, tags, delete."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clients import images
from tests.clients.clitools import docker_ref

DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V2S1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def assert_layout_has(layout: Path, image: images.Image) -> None:
    """Every blob of `image` is in the OCI layout, byte for byte."""
    for digest, data in image.blobs().items():
        assert images.layout_blob(layout, digest) == data, digest


def test_push_keeps_the_image_byte_for_byte(skopeo, registry, repo, oci_image, tmp_path):
    ref = docker_ref(registry.host, repo, "v1")
    digestfile = tmp_path / "digest"
    skopeo.copy(oci_image.ref, ref, "--digestfile", str(digestfile))

    image = oci_image.image
    assert digestfile.read_text().strip() == image.digest
    assert skopeo.raw(ref) == image.manifest
    info = skopeo.inspect(ref)
    assert info["Digest"] == image.digest
    assert info["Layers"] == image.layer_digests
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Labels"] == json.loads(image.config)["config"]["Labels"]
    assert info["RepoTags"] == ["v1"]
    config = skopeo.config(ref)
    assert config["rootfs"]["diff_ids"] == image.diff_ids
    assert [h["created_by"] for h in config["history"]] == [
        layer.created_by for layer in image.layers]


def test_pull_back_to_an_oci_layout_and_a_dir(skopeo, registry, repo, oci_image, tmp_path):
    ref = docker_ref(registry.host, repo, "v1")
    skopeo.copy(oci_image.ref, ref)
    image = oci_image.image

    back = tmp_path / "back-oci"
    skopeo.copy(ref, f"oci:{back}:pulled")
    desc, manifest = images.read_layout_manifest(back, "pulled")
    assert desc["digest"] == image.digest
    assert manifest == image.manifest
    assert_layout_has(back, image)

    as_dir = tmp_path / "back-dir"
    skopeo.copy(ref, f"dir:{as_dir}")
    assert (as_dir / "manifest.json").read_bytes() == image.manifest
    for digest, data in image.blobs().items():
        if digest != image.digest:
            assert (as_dir / digest.removeprefix("sha256:")).read_bytes() == data, digest


def test_pull_by_digest(skopeo, registry, repo, oci_image, tmp_path):
    skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, "v1"))
    by_digest = docker_ref(registry.host, repo, oci_image.image.digest)
    assert skopeo.inspect(by_digest)["Digest"] == oci_image.image.digest
    skopeo.copy(by_digest, f"dir:{tmp_path / 'd'}")
    assert (tmp_path / "d" / "manifest.json").read_bytes() == oci_image.image.manifest


def test_multi_arch_index_round_trip(skopeo, registry, repo, oci_index, tmp_path):
    ref = docker_ref(registry.host, repo, "multi")
    skopeo.copy(oci_index.ref, ref, "--all")
    multi = oci_index.index
    assert skopeo.raw(ref) == multi.index
    for platform, image in multi.images.items():
        arch = platform.split("/")[1]
        variant = ["--override-variant", "v8"] if arch == "arm64" else []
        info = skopeo.inspect(ref, "--override-arch", arch, *variant)
        assert info["Digest"] == multi.digest  # skopeo shows the index's digest
        assert info["Architecture"] == arch
        assert info["Layers"] == image.layer_digests
        assert skopeo.raw(docker_ref(registry.host, repo, image.digest)) == image.manifest

    back = tmp_path / "back"
    skopeo.copy(ref, f"oci:{back}:multi", "--all")
    desc, index = images.read_layout_manifest(back, "multi")
    assert (desc["digest"], index) == (multi.digest, multi.index)
    for image in multi.images.values():
        assert_layout_has(back, image)


def test_copy_of_one_platform_from_an_index(skopeo, registry, repo, oci_index, tmp_path):
    ref = docker_ref(registry.host, repo, "multi")
    skopeo.copy(oci_index.ref, ref, "--all")
    arm = oci_index.index.images["linux/arm64"]
    skopeo.run("--override-arch", "arm64", "--override-variant", "v8", "copy",
               "--src-tls-verify=false", ref, f"dir:{tmp_path / 'arm'}")
    assert (tmp_path / "arm" / "manifest.json").read_bytes() == arm.manifest
    assert json.loads((tmp_path / "arm" / arm.config_digest[7:]).read_bytes())[
        "architecture"] == "arm64"


def test_push_as_docker_schema2_and_manifest_list(skopeo, registry, repo, oci_index):
    ref = docker_ref(registry.host, repo, "docker")
    skopeo.copy(oci_index.ref, ref, "--all", "--format", "v2s2")
    listing = json.loads(skopeo.raw(ref))
    assert listing["mediaType"] == DOCKER_LIST
    assert {(m["platform"]["architecture"], m["mediaType"]) for m in listing["manifests"]} == {
        ("amd64", DOCKER_V2S2), ("arm64", DOCKER_V2S2)}
    for entry in listing["manifests"]:
        arch = entry["platform"]["architecture"]
        image = oci_index.index.images["linux/" + arch]
        manifest = json.loads(skopeo.raw(docker_ref(registry.host, repo, entry["digest"])))
        assert manifest["mediaType"] == DOCKER_V2S2
        assert [layer["digest"] for layer in manifest["layers"]] == image.layer_digests
        assert manifest["config"]["digest"] == image.config_digest


def test_push_as_docker_schema1(skopeo, registry, repo, oci_image, tmp_path):
    ref = docker_ref(registry.host, repo, "old")
    digestfile = tmp_path / "digest"
    skopeo.copy(oci_image.ref, ref, "--format", "v2s1", "--digestfile", str(digestfile))
    raw = json.loads(skopeo.raw(ref))
    assert raw["schemaVersion"] == 1
    assert raw["signatures"]
    info = skopeo.inspect(ref)
    assert info["Digest"] == digestfile.read_text().strip()
    assert set(info["Layers"]) == set(oci_image.image.layer_digests)
    skopeo.copy(ref, f"oci:{tmp_path / 'back'}:old")  # converted back to OCI on the way
    _, manifest = images.read_layout_manifest(tmp_path / "back", "old")
    layers = [layer["digest"] for layer in json.loads(manifest)["layers"]]
    assert layers == oci_image.image.layer_digests


def test_recompressed_zstd_layers(skopeo, registry, repo, oci_image, tmp_path):
    ref = docker_ref(registry.host, repo, "zstd")
    skopeo.copy(oci_image.ref, ref, "--dest-compress-format", "zstd")
    manifest = json.loads(skopeo.raw(ref))
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"}
    assert skopeo.config(ref)["rootfs"]["diff_ids"] == oci_image.image.diff_ids
    out = tmp_path / "plain"
    skopeo.copy(ref, f"dir:{out}", "--dest-decompress")
    for layer in oci_image.image.layers:
        assert (out / layer.diff_id.removeprefix("sha256:")).read_bytes() == layer.tar


def test_list_tags(skopeo, registry, repo, oci_image):
    tags = ["1.0", "1.1", "latest", "v2-rc.1", "A_Upper"]
    for tag in tags:
        skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, tag))
    assert sorted(skopeo.list_tags(f"docker://{registry.host}/{repo}")) == sorted(tags)


def test_delete_by_tag_removes_the_manifest(skopeo, registry, repo, oci_image, salt, tmp_path):
    for tag in ("a", "b"):
        skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, tag))
    other = images.write_image(tmp_path / "other", salt + "-other", tag="keep")
    skopeo.copy(f"oci:{tmp_path / 'other'}:keep", docker_ref(registry.host, repo, "keep"))

    skopeo.delete(docker_ref(registry.host, repo, "a"))  # skopeo deletes by digest
    for gone in ("a", "b", oci_image.image.digest):
        err = skopeo.fails("inspect", "--tls-verify=false", docker_ref(registry.host, repo, gone))
        assert "manifest unknown" in err.stderr.lower(), err
    assert skopeo.list_tags(f"docker://{registry.host}/{repo}") == ["keep"]
    assert skopeo.inspect(docker_ref(registry.host, repo, "keep"))["Digest"] == other.digest


def test_delete_by_digest(skopeo, registry, repo, oci_image):
    skopeo.copy(oci_image.ref, docker_ref(registry.host, repo, "v1"))
    by_digest = docker_ref(registry.host, repo, oci_image.image.digest)
    skopeo.delete(by_digest)
    err = skopeo.fails("inspect", "--tls-verify=false", by_digest)
    assert "manifest unknown" in err.stderr.lower(), err


def test_copy_between_repositories_mounts_blobs(skopeo, registry, repo, oci_image, tmp_path):
    source = docker_ref(registry.host, repo, "v1")
    target = docker_ref(registry.host, repo + "-copy", "v1")
    skopeo.copy(oci_image.ref, source)
    proc = skopeo.run("--debug", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                      source, target)
    log = proc.stderr.decode()
    for digest in oci_image.image.layer_digests:
        quoted = digest.replace(":", "%3A")
        assert f"mount={quoted}" in log, f"no mount of {digest} tried:\n{log}"
        assert f"?digest={quoted}" not in log, f"{digest} was uploaded, not mounted:\n{log}"
    assert skopeo.raw(target) == oci_image.image.manifest

    skopeo.delete(source)  # the copy stands on its own
    skopeo.copy(target, f"oci:{tmp_path / 'back'}:v1")
    assert_layout_has(tmp_path / "back", oci_image.image)


def test_tls_probe_on_the_plain_http_port_fails_at_once(skopeo, registry, repo):
    """With --tls-verify=false, containers/image tries HTTPS first and falls back to
    HTTP when the handshake fails. A plain-HTTP registry must answer the TLS
    ClientHello at once (CNCF Distribution, on Go's net/http, sends an HTTP 400),
    or every skopeo/podman command waits out the client's 10 s handshake timeout."""
    proc = skopeo.run("--debug", "list-tags", "--tls-verify=false",
                      f"docker://{registry.host}/{repo}", check=False)
    log = proc.stderr.decode()
    assert f"Ping http://{registry.host}/v2/" in log, log
    assert "handshake timeout" not in log, log
