"""A real upstream registry (this registry, anonymous) and a mirror in front of it.

The mirror names the same upstream several times, with different rules:
``up`` (tag_ttl 1h, negative_ttl 1h, ns host docker.example), ``short``
(tag_ttl 0: every tag pull revalidates) and ``hub`` (the default upstream,
Docker Hub style: single-component names get library/).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mirror.support import AccessLog, start_mirror
from tests.server import RegistryProcess


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    base = tmp_path_factory.mktemp("upstream")
    server = RegistryProcess(base / "data", workers=1).start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def upstream_log(upstream: RegistryProcess) -> AccessLog:
    return AccessLog(upstream)


def upstreams_for(upstream_url: str) -> list[dict]:
    return [
        {"name": "up", "url": upstream_url, "hosts": ["docker.example"], "tag_ttl": "1h",
         "negative_ttl": "1h"},
        {"name": "short", "url": upstream_url, "tag_ttl": 0, "negative_ttl": 0},
        {"name": "hub", "url": upstream_url, "default": True, "docker_hub": True,
         "hosts": ["hub.example"], "tag_ttl": "1h", "negative_ttl": 0},
    ]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory,
           upstream: RegistryProcess) -> Iterator[RegistryProcess]:
    base: Path = tmp_path_factory.mktemp("mirror")
    server = start_mirror(base, upstreams_for(upstream.url))
    yield server
    if server.proc and server.proc.poll() is None:
        server.stop()


@pytest.fixture
def name() -> str:
    """A fresh upstream repository name."""
    return f"team/img{uuid.uuid4().hex[:10]}"
