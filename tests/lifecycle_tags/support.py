"""A registry with users, groups, a robot and tag rules, and pushes as any of them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from ociregistry.auth.htpasswd import Htpasswd
from tests.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from tests.server import RegistryProcess

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw"}
RULES = [
    {"users": ["*"], "repositories": ["**"], "actions": ["pull", "push", "delete"]},
    {"groups": ["robots"], "repositories": ["**"], "actions": ["pull", "push", "delete"]},
    {"users": ["root"], "actions": ["admin"]},
]
GROUPS = {"release": ["alice"]}
TAG_SETTINGS = {
    "immutable": [{"repositories": "prod/**", "tags": "v*.*.*", "description": "releases"}],
    "protected": [{"repositories": "**", "tags": "stable", "groups": ["release"],
                   "users": ["robot$deployer"]}],
}


@dataclass
class Live:
    url: str
    data_dir: Path
    config: Path
    robots: dict[str, str]  # robot name -> token

    def session(self, who: str | None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        if who in PASSWORDS:
            s.auth = (who, PASSWORDS[who])
        elif who is not None:
            s.auth = (f"robot${who}", self.robots[who])
        return s


def write_config(root: Path, tags: dict[str, Any] | None = None,
                 auth: bool = True, **extra: Any) -> Path:
    settings: dict[str, Any] = {"tags": tags or TAG_SETTINGS, **extra}
    if auth:
        htpasswd = Htpasswd(str(root / "htpasswd"))
        for user, password in PASSWORDS.items():
            htpasswd.set_password(user, password, cost=4)
        settings["auth"] = {"htpasswd": str(root / "htpasswd"), "rules": RULES,
                            "groups": GROUPS}
    config = root / f"config-{uuid.uuid4().hex[:6]}.yml"
    config.write_text(yaml.safe_dump(settings))
    return config


def create_robot(config: Path, data_dir: Path, name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "ociregistry", "token", "create", name, "--scope",
         "**:pull,push,delete", "--expires", "1d", "--json", "--config", str(config),
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)["token"]


def start(root: Path, config: Path, workers: int = 2) -> RegistryProcess:
    server = RegistryProcess(root / "data", workers=workers, config=config)
    server.ready_path = "/healthz"
    return server.start()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(s: requests.Session, url: str, repo: str, tag: str | None,
               layers: int = 1) -> tuple[str, bytes, dict[str, bytes]]:
    """Push a new image's blobs and manifest (under ``tag``, or by digest when None):
    (digest, manifest bytes, blobs by digest)."""
    blobs: dict[str, bytes] = {}
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "n": os.urandom(8).hex()}).encode()
    for data in (config, *(os.urandom(2048) for _ in range(layers))):
        d = digest_of(data)
        r = s.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data,
                   timeout=60)
        assert r.status_code == 201, r.text
        blobs[d] = data
    digests = list(blobs)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digests[0], "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": len(blobs[d])}
                   for d in digests[1:]],
    }).encode()
    digest = digest_of(manifest)
    r = put(s, url, repo, tag or digest, manifest)
    assert r.status_code == 201, r.text
    return digest, manifest, blobs


def put(s: requests.Session, url: str, repo: str, ref: str, manifest: bytes) -> requests.Response:
    return s.put(f"{url}/v2/{repo}/manifests/{ref}", data=manifest,
                 headers={"Content-Type": OCI_MANIFEST}, timeout=60)


def tag_digest(s: requests.Session, url: str, repo: str, tag: str) -> str | None:
    r = s.head(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=60)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.status_code
    return r.headers["Docker-Content-Digest"]


def history(s: requests.Session, url: str, repo: str, tag: str) -> dict[str, Any]:
    r = s.get(f"{url}/api/v1/repositories/{repo}/tags/{tag}/history", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def denied(r: requests.Response, *words: str) -> str:
    """The OCI DENIED message of a refused request, checked to name ``words``."""
    assert r.status_code == 403, (r.status_code, r.text)
    errors = r.json()["errors"]
    assert errors[0]["code"] == "DENIED", r.text
    for word in words:
        assert word in errors[0]["message"], errors[0]["message"]
    return errors[0]["message"]
