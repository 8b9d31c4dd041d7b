"""Fixtures of the events tests: receivers, and a registry configured to send to them."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.events.receivers import Receiver
from tests.server import RegistryProcess

# Fast retries and polling, so tests finish in seconds on a loaded machine.
FAST = {"poll_interval_seconds": 0.2, "backoff_initial_seconds": 0.2,
        "backoff_max_seconds": 1.0, "pulls": {"batch_seconds": 0.5}}


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def write_config(path: Path, endpoints: list[dict[str, Any]], **events: Any) -> Path:
    path.write_text(yaml.safe_dump({"events": {**FAST, **events, "endpoints": endpoints}}))
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator[Any]:
    """start_registry(endpoints, **events) -> a running RegistryProcess (stopped after)."""
    started: list[RegistryProcess] = []

    def start(endpoints: list[dict[str, Any]], workers: int = 2, **events: Any) -> RegistryProcess:
        config = write_config(tmp_path / f"config-{len(started)}.yml", endpoints, **events)
        server = RegistryProcess(tmp_path / "data", workers=workers, config=config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()
