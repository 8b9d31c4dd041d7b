"""A throwaway CNCF Distribution (Debian's ``docker-registry``, 2.8.2) for import tests.

Started with a config written here, on a free loopback port, storing on a local
directory or in an S3 bucket; never the machine's own service or /etc config.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.server import free_port

START_TIMEOUT = 60
V2 = "docker/registry/v2"


def distribution_binary() -> str:
    found = shutil.which("docker-registry") or shutil.which("registry")
    if found is None:
        pytest.fail("docker-registry not installed (apt-get install docker-registry)")
    return found


class Distribution:
    """``docker-registry serve CONFIG``; stores under ``root`` or in ``s3``."""

    def __init__(self, base: Path, s3: dict[str, Any] | None = None) -> None:
        self.base = base
        self.root = base / "distribution"
        self.port = free_port()
        self.s3 = s3
        self.proc: subprocess.Popen | None = None
        self.log_path = base / "distribution.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _config(self) -> dict[str, Any]:
        storage: dict[str, Any] = {
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        }
        if self.s3 is None:
            storage["filesystem"] = {"rootdirectory": str(self.root)}
        else:
            storage["s3"] = self.s3
            storage["redirect"] = {"disable": True}
        return {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": storage,
            "http": {"addr": self.host, "secret": "import-test"},
            # Schema 1 pushes are refused by default since 2.8; the import must meet some.
            "compatibility": {"schema1": {"enabled": True}},
        }

    def start(self) -> Distribution:
        config = self.base / "distribution.yml"
        config.write_text(yaml.safe_dump(self._config()))
        # 2.8.2's S3 driver fails at start when AWS_CA_BUNDLE is set (even empty);
        # nothing else from AWS_* may steer it either.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [distribution_binary(), "serve", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"distribution exited: {self.tail()}")
            try:
                if requests.get(f"{self.url}/v2/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"distribution did not start: {self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()

    # -- what it serves -----------------------------------------------------
    def catalog(self) -> list[str]:
        return requests.get(f"{self.url}/v2/_catalog?n=1000", timeout=30).json()["repositories"]

    def tags(self, repo: str) -> list[str]:
        return requests.get(f"{self.url}/v2/{repo}/tags/list", timeout=30).json()["tags"] or []


ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
])


def get_manifest(url: str, repo: str, ref: str,
                 auth: Any = None) -> tuple[int, bytes, str | None, str | None]:
    """(status, body, Docker-Content-Digest, Content-Type) of a manifest GET."""
    r = requests.get(f"{url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT},
                     timeout=60, auth=auth)
    return (r.status_code, r.content, r.headers.get("Docker-Content-Digest"),
            r.headers.get("Content-Type"))


def blob_digest(url: str, repo: str, digest: str, auth: Any = None) -> str | None:
    """The sha256 of a blob as served (streamed), or None when not 200."""
    import hashlib

    with requests.get(f"{url}/v2/{repo}/blobs/{digest}", stream=True, timeout=120,
                      auth=auth) as r:
        if r.status_code != 200:
            return None
        h = hashlib.sha256()
        for chunk in r.iter_content(1 << 20):
            h.update(chunk)
        return "sha256:" + h.hexdigest()
