"""Fixtures of the mirror tests: real upstreams, real clients, images to seed.

Clients are isolated (own config, storage, sockets) and cannot reach the internet
(tests/mirror/clients/harness.py); upstreams and mirrors listen on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.auth.support import Pki, make_pki
from tests.clients import images
from tests.clients.clitools import Podman, Skopeo, write_client_config
from tests.mirror.clients.harness import Containerd, Dockerd, no_internet_env
from tests.mirror.upstreams import Upstream, seed


@dataclass
class Images:
    """What a test seeds upstream: a 3-layer image and a 2-platform index."""

    salt: str
    dir: Path
    image: images.Image
    multi: images.MultiArch

    def push(self, upstream: Upstream, skopeo: Skopeo, repo: str, tag: str) -> None:
        seed(upstream, skopeo, self.dir / "image", "v1", repo, tag)

    def push_multi(self, upstream: Upstream, skopeo: Skopeo, repo: str, tag: str) -> None:
        seed(upstream, skopeo, self.dir / "multi", "m", repo, tag, "--all")


def build_images(base: Path) -> Images:
    salt = uuid.uuid4().hex[:12]
    image = images.write_image(base / "image", salt, tag="v1")
    multi = images.write_multiarch(base / "multi", salt, tag="m")
    return Images(salt, base, image, multi)


@pytest.fixture(scope="module")
def client_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mirror-clients")


@pytest.fixture(scope="module")
def client_env(client_home: Path) -> dict[str, str]:
    return no_internet_env(write_client_config(client_home))


@pytest.fixture(scope="module")
def skopeo(client_home: Path, client_env: dict[str, str]) -> Skopeo:
    return Skopeo(client_home, client_env)


@pytest.fixture
def make_podman(tmp_path: Path, client_home: Path,
                client_env: dict[str, str]) -> Iterator[Callable[[Path], Podman]]:
    """podman with its own storage, reading ``registries_conf`` (a mirror set-up)."""
    runroots: list[Path] = []

    def make(registries_conf: Path) -> Podman:
        runroot = Path(tempfile.mkdtemp(prefix="ocm-podman-", dir="/tmp"))  # short: < 50
        runroots.append(runroot)
        env = {**client_env, "CONTAINERS_REGISTRIES_CONF": str(registries_conf)}
        return Podman(tmp_path / f"podman-{len(runroots)}", runroot, client_home, env)

    yield make
    for runroot in runroots:
        shutil.rmtree(runroot, ignore_errors=True)


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    daemon = Containerd().start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def make_dockerd(containerd: Containerd) -> Iterator[Callable[[list[str]], Dockerd]]:
    """dockerd started with ``registry-mirrors``; one per mirror list in the module."""
    started: dict[tuple[str, ...], Dockerd] = {}

    def make(mirrors: list[str]) -> Dockerd:
        key = tuple(mirrors)
        if key not in started:
            started[key] = Dockerd(containerd, mirrors).start()
        return started[key]

    yield make
    for daemon in started.values():
        daemon.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("mirror-pki"))


@pytest.fixture(scope="module")
def seeded_images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return build_images(tmp_path_factory.mktemp("mirror-images"))
