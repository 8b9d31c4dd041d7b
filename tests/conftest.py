from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import RegistryProcess


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """One real registry (gunicorn, 2 workers) shared by the session.

    With REGISTRY_TEST_DATABASE_URL set (a PostgreSQL server URL, e.g.
    postgresql+psycopg://postgres@127.0.0.1:5433/postgres), this and every other
    RegistryProcess keep their metadata in a fresh database on that server.
    (Not OCIREGISTRY_...: that prefix belongs to the registry's own settings.)
    """
    base = tmp_path_factory.mktemp("registry")
    server = RegistryProcess(base / "data").start()
    yield server
    server.stop()


@pytest.fixture
def repo() -> str:
    """A fresh repository name, so tests sharing the server don't collide."""
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """A registry of its own, for tests that restart it or need a clean slate."""
    server = RegistryProcess(tmp_path / "data").start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.stop()
