"""A live registry (real gunicorn) with content and users, for the /api/v1 tests.

Content is pushed while the registry runs without authentication; it then
restarts on the same data directory with users, rules and a robot account.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from ociregistry.auth.htpasswd import Htpasswd
from tests.helpers import OCI_INDEX, make_image, put_manifest, sha256
from tests.server import RegistryProcess

PASSWORDS = {"admin": "admin-pw", "puller": "puller-pw", "pusher": "pusher-pw"}
RULES = [
    {"users": ["admin"], "actions": ["admin"]},
    {"users": ["puller"], "repositories": ["team/**"], "actions": ["pull"]},
    {"users": ["pusher"], "repositories": ["team/**"], "actions": ["pull", "push", "delete"]},
    {"anonymous": True, "repositories": ["public/**"], "actions": ["pull"]},
    # Robots may reach team/**; the robot's own scope narrows it to team/app, pull.
    {"groups": ["robots"], "repositories": ["team/**"], "actions": ["pull", "push", "delete"]},
]
TAGS = ["latest", "v1.0", "v1.1", "v1.10", "v2.0", "v2.1-rc"]


@dataclass
class Live:
    url: str
    config: Path
    data_dir: Path
    robot: tuple[str, str]
    digests: dict[str, str]  # "repo:tag" -> digest

    def auth(self, who: str) -> Any:
        if who == "anonymous":
            return None
        if who == "robot":
            return self.robot
        return (who, PASSWORDS[who])


def _push_content(url: str) -> dict[str, str]:
    digests = {}
    for tag in TAGS:
        manifest = make_image(url, "team/app", layers=1, extra={
            "annotations": {"org.opencontainers.image.source": "https://git.example/app",
                            "org.opencontainers.image.version": tag}})
        r = put_manifest(url, "team/app", tag, manifest)
        assert r.status_code == 201, r.text
        digests[f"team/app:{tag}"] = r.headers["Docker-Content-Digest"]
    for repo in ("team/other", "public/base", "secret/thing"):
        r = put_manifest(url, repo, "latest", make_image(url, repo, layers=2))
        assert r.status_code == 201, r.text
        digests[f"{repo}:latest"] = r.headers["Docker-Content-Digest"]
    # An index over two images (platforms) in team/app.
    children = []
    for arch in ("amd64", "arm64"):
        body = json.dumps(make_image(url, "team/app", layers=1)).encode()
        r = put_manifest(url, "team/app", sha256(body), body)
        assert r.status_code == 201, r.text
        children.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "digest": r.headers["Docker-Content-Digest"], "size": len(body),
                         "platform": {"os": "linux", "architecture": arch}})
    r = put_manifest(url, "team/app", "multi", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": children}, OCI_INDEX)
    assert r.status_code == 201, r.text
    digests["team/app:multi"] = r.headers["Docker-Content-Digest"]
    return digests


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("api_v1")
    data_dir = root / "data"
    open_registry = RegistryProcess(data_dir, workers=2).start()
    try:
        digests = _push_content(open_registry.url)
    finally:
        open_registry.stop()
    htpasswd = Htpasswd(str(root / "htpasswd"))
    for user, password in PASSWORDS.items():
        htpasswd.set_password(user, password, cost=4)
    config = root / f"config-{uuid.uuid4().hex[:6]}.yml"
    config.write_text(yaml.safe_dump({"auth": {"htpasswd": str(root / "htpasswd"),
                                               "rules": RULES}}))
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "token", "create", "ci", "--scope",
         "team/app:pull", "--expires", "1d", "--json", "--config", str(config),
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=True)
    robot = ("robot$ci", json.loads(out.stdout)["token"])
    server = RegistryProcess(data_dir, workers=2, config=config)
    server.ready_path = "/healthz"
    server.start()
    try:
        yield Live(server.url, config, data_dir, robot, digests)
    finally:
        server.stop()


@pytest.fixture(scope="package")
def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session
