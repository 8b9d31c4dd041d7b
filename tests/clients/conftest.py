"""Fixtures for real-client tests: isolated skopeo/podman and local OCI layouts."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.auth.support import Pki, make_pki
from tests.clients import images
from tests.clients.clitools import Podman, Skopeo, write_client_config


@dataclass
class Built:
    """A layout on disk holding `tag`, and what the image builder put there."""

    layout: Path
    tag: str
    image: images.Image

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


@dataclass
class BuiltIndex:
    layout: Path
    tag: str
    index: images.MultiArch

    @property
    def ref(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


@pytest.fixture(scope="session")
def client_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clients")


@pytest.fixture(scope="session")
def client_env(client_home: Path) -> dict[str, str]:
    return write_client_config(client_home)


@pytest.fixture(scope="session")
def skopeo(client_home: Path, client_env: dict[str, str]) -> Skopeo:
    return Skopeo(client_home, client_env)


@pytest.fixture
def podman(tmp_path: Path, client_home: Path, client_env: dict[str, str]) -> Iterator[Podman]:
    """podman with storage of its own for this test (vfs, under tmp_path).

    Its runroot must be a short path (podman refuses one over 50 characters).
    """
    runroot = Path(tempfile.mkdtemp(prefix="ocireg-podman-", dir="/tmp"))
    try:
        yield Podman(tmp_path / "podman", runroot, client_home, client_env)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


@pytest.fixture
def salt() -> str:
    """Makes this test's blobs unique, so no other test can lend or take them."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def oci_image(tmp_path: Path, salt: str) -> Built:
    layout = tmp_path / "src-image"
    return Built(layout, "v1", images.write_image(layout, salt, tag="v1"))


@pytest.fixture
def oci_index(tmp_path: Path, salt: str) -> BuiltIndex:
    layout = tmp_path / "src-index"
    return BuiltIndex(layout, "multi", images.write_multiarch(layout, salt, tag="multi"))



@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with server and client certificates, for the HTTPS registries of a module."""
    return make_pki(tmp_path_factory.mktemp("pki"))
