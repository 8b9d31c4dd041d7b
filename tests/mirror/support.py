"""Helpers of the mirror tests: a mirror registry in front of real upstreams, and
counting what reached an upstream (from its own access log)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.server import RegistryProcess


def write_config(path: Path, upstreams: list[dict[str, Any]], **extra: Any) -> Path:
    config = {"mirror": {"upstreams": upstreams, **extra.pop("mirror", {})}, **extra}
    path.write_text(yaml.safe_dump(config))
    return path


def start_mirror(base: Path, upstreams: list[dict[str, Any]], workers: int = 2,
                 **extra: Any) -> RegistryProcess:
    base.mkdir(parents=True, exist_ok=True)
    config = write_config(base / "mirror.yml", upstreams, **extra)
    return RegistryProcess(base / "data", workers=workers, config=config).start()


class AccessLog:
    """Requests an upstream registry (a RegistryProcess) received, from its access log.

    Lines are written when a response is done, by any worker: ``settle`` sends a
    marker request and waits until its line is there, so that every request that
    finished before is counted.
    """

    def __init__(self, server: RegistryProcess) -> None:
        self.server = server

    def lines(self) -> list[str]:
        return self.server.log_path.read_text(errors="replace").splitlines()

    def settle(self) -> None:
        marker = f"settle{uuid.uuid4().hex[:12]}"
        requests.get(f"{self.server.url}/v2/{marker}/tags/list", timeout=30,
                     auth=getattr(self.server, "test_auth", None))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(marker in line for line in self.lines()):
                return
            time.sleep(0.05)
        raise AssertionError("the upstream's access log never showed the marker request")

    def count(self, method: str, path_pattern: str) -> int:
        """Requests with ``method`` whose path matches ``path_pattern`` (a regex)."""
        self.settle()
        pattern = re.compile(rf" {method} {path_pattern}\S* [0-9]{{3}} ")
        return sum(1 for line in self.lines() if pattern.search(line))
