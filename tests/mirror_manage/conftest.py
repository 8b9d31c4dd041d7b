"""A real upstream (a second instance of this registry, holding images) and a mirror
of it with users: ``admin`` (registry admin) and ``bob`` (pulls under up/**).

The mirror's upstream ``up`` pre-fetches library/alpine:3.*, pins library/pinned and
evicts after 7 days unused; upstream ``down`` is
unreachable; GC has no grace period and tag history keeps nothing
restorable, so what eviction deletes the next GC frees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from ociregistry.auth.htpasswd import Htpasswd
from tests.lifecycle.support import push_image
from tests.server import RegistryProcess, free_port

PASSWORDS = {"admin": "admin-pw", "bob": "bob-pw"}
UPSTREAM_PASSWORD = "never-shown-upstream-secret"
ALPINE_TAGS = ["3.19", "3.20", "edge"]


@dataclass
class Mirror:
    server: RegistryProcess
    upstream: RegistryProcess
    config: Path
    digests: dict[str, str]  # "repo:tag" in the upstream -> digest

    @property
    def url(self) -> str:
        return self.server.url

    def session(self, who: str | None = "admin") -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        if who is not None:
            session.auth = (who, PASSWORDS[who])
        return session

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ociregistry", *args, "--config", str(self.config),
             "--data-dir", str(self.server.data_dir)],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, **self.server.env})


def mirror_config(root: Path, upstream_url: str, **mirror: object) -> Path:
    users = Htpasswd(str(root / "htpasswd"))
    for user, password in PASSWORDS.items():
        users.set_password(user, password, cost=4)
    config = root / "mirror.yml"
    config.write_text(yaml.safe_dump({
        "auth": {"htpasswd": str(root / "htpasswd"), "rules": [
            {"users": ["admin"], "actions": ["admin"]},
            {"users": ["bob"], "repositories": ["up/**"], "actions": ["pull"]}]},
        "gc": {"grace_period_seconds": 0},
        "tags": {"restore_window_seconds": 0},
        "pull_stats": {"flush_interval_seconds": 0.2},
        "mirror": {"upstreams": [{
            "name": "up", "url": upstream_url, "hosts": ["upstream.example"],
            "username": "mirror", "password": UPSTREAM_PASSWORD,
            "prefetch": [{"repository": "library/alpine", "tags": "3.*"}],
            "pinned": ["library/pinned"], "evict_unused_after": "7d"}, {
            # nothing listens there: its pre-fetch fails, and says so
            "name": "down", "url": f"http://127.0.0.1:{free_port()}", "connect_timeout": 2,
            "prefetch": [{"repository": "library/alpine", "tags": "*"}]}], **mirror},
    }))
    return config


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    root = tmp_path_factory.mktemp("mirror_manage")
    upstream = RegistryProcess(root / "upstream", workers=1).start()
    try:
        digests = {}
        for tag in ALPINE_TAGS:
            digests[f"library/alpine:{tag}"] = push_image(upstream.url, "library/alpine", [tag])
        for repo in ("library/busybox", "library/pinned"):
            digests[f"{repo}:1"] = push_image(upstream.url, repo, ["1"])
        config = mirror_config(root, upstream.url)
        server = RegistryProcess(root / "data", workers=2, config=config)
        server.ready_path = "/healthz"
        server.start()
        try:
            yield Mirror(server, upstream, config, digests)
        finally:
            server.stop()
    finally:
        upstream.stop()
