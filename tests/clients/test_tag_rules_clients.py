"""skopeo and podman show the user why a push or delete of an immutable or protected tag
is refused: the registry's DENIED message, naming the rule."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients import images
from tests.clients.clitools import docker_ref
from tests.lifecycle_tags.support import PASSWORDS, start, write_config
from tests.server import RegistryProcess


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """Users alice (group release) and bob; v*.*.* immutable in prod/**; "stable"
    protected for group release."""
    root = tmp_path_factory.mktemp("guarded")
    server = start(root, write_config(root), workers=2)
    yield server
    server.stop()


def creds(user: str) -> str:
    return f"{user}:{PASSWORDS[user]}"


def second_image(tmp_path: Path) -> str:
    layout = tmp_path / "second"
    images.write_image(layout, uuid.uuid4().hex[:12], tag="v2")
    return f"oci:{layout}:v2"


def test_skopeo_shows_why_an_immutable_tag_cannot_move_or_go(skopeo, guarded, oci_image,
                                                             tmp_path):
    repo = f"prod/app-{uuid.uuid4().hex[:8]}"
    tag_ref = docker_ref(guarded.host, repo, "v1.0.0")
    skopeo.copy(oci_image.ref, tag_ref, "--dest-creds", creds("alice"))
    skopeo.copy(oci_image.ref, tag_ref, "--dest-creds", creds("alice"))  # same digest: fine

    error = skopeo.fails("copy", "--dest-tls-verify=false", "--dest-creds", creds("alice"),
                         second_image(tmp_path), tag_ref)
    assert "denied" in error.stderr.lower(), error
    assert "is immutable (rule config:immutable[0]" in error.stderr, error
    error = skopeo.fails("delete", "--tls-verify=false", "--creds", creds("alice"), tag_ref)
    assert "is immutable (rule config:immutable[0]" in error.stderr, error
    info = skopeo.inspect(tag_ref, "--creds", creds("alice"))
    assert info["Digest"] == oci_image.image.digest


def test_podman_shows_why_a_protected_tag_refuses_a_push(skopeo, podman, guarded, oci_image,
                                                        tmp_path):
    repo = f"team/svc-{uuid.uuid4().hex[:8]}"
    src = f"{guarded.host}/{repo}:v1"
    skopeo.copy(oci_image.ref, f"docker://{src}", "--dest-creds", creds("bob"))
    podman.pull(src, "--creds", creds("bob"))

    error = podman.fails("push", "--tls-verify=false", "--signature-policy", podman.policy,
                         "--creds", creds("bob"), src, f"{guarded.host}/{repo}:stable")
    assert "denied" in error.stderr.lower(), error
    assert 'is protected (rule config:protected[0]: tags "stable"' in error.stderr, error
    assert "bob may not push" in error.stderr, error
    # alice is in group release: the same push goes through
    digest = podman.push(src, f"{guarded.host}/{repo}:stable", tmp_path / "digest",
                         "--creds", creds("alice"))
    assert skopeo.inspect(f"docker://{guarded.host}/{repo}:stable",
                          "--creds", creds("bob"))["Digest"] == digest


def test_podman_shows_why_an_immutable_tag_cannot_move(skopeo, podman, guarded, oci_image,
                                                     tmp_path):
    repo = f"prod/web-{uuid.uuid4().hex[:8]}"
    skopeo.copy(oci_image.ref, docker_ref(guarded.host, repo, "v1.0.0"),
                "--dest-creds", creds("alice"))
    skopeo.copy(second_image(tmp_path), docker_ref(guarded.host, repo, "next"),
                "--dest-creds", creds("alice"))
    podman.pull(f"{guarded.host}/{repo}:next", "--creds", creds("alice"))
    error = podman.fails("push", "--tls-verify=false", "--signature-policy", podman.policy,
                         "--creds", creds("alice"), f"{guarded.host}/{repo}:next",
                         f"{guarded.host}/{repo}:v1.0.0")
    assert "is immutable (rule config:immutable[0]" in error.stderr, error
