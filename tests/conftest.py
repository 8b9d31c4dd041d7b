from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import RegistryProcess

# REGISTRY_TEST_CLUSTER=1: `registry` is a cluster (tests/cluster/topology.py: three
# instances on S3 + PostgreSQL behind nginx), and only the tests that can run against
# one are collected (see pytest_collection_modifyitems).
CLUSTER_MODE = os.environ.get("REGISTRY_TEST_CLUSTER") == "1"
# Tests that need a registry process of their own (data dir, restarts, settings).
SINGLE_NODE_FIXTURES = {"fresh_registry"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "single_node(reason): needs one registry process as such (its files, its log, a "
        "restart, no proxy in front); deselected when REGISTRY_TEST_CLUSTER=1",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In cluster mode, deselect (not skip) what cannot run against a cluster: tests
    that don't use ``registry``, or use a registry of their own, or say single_node."""
    if not CLUSTER_MODE:
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        runs_on_cluster = (
            "registry" in names
            and not names & SINGLE_NODE_FIXTURES
            and item.get_closest_marker("single_node") is None
        )
        (keep if runs_on_cluster else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str | None:
    if CLUSTER_MODE:
        return ("REGISTRY_TEST_CLUSTER=1: `registry` is 3 instances on S3 (SeaweedFS) + "
                "PostgreSQL behind nginx; single-node tests are deselected")
    return None


# The API suite checks the registry's own blob responses (Range, ETag, 304): in cluster
# mode the instances stream blobs. The 307 to the store is tested in tests/cluster.
CLUSTER_SETTINGS: dict[str, Any] = {"storage": {"s3": {"redirect": False}}}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real registry (gunicorn, 2 workers) shared by the session.

    With REGISTRY_TEST_DATABASE_URL set (a PostgreSQL server URL, e.g.
    postgresql+psycopg://postgres@127.0.0.1:5433/postgres), this and every other
    RegistryProcess keep their metadata in a fresh database on that server.
    (Not OCIREGISTRY_...: that prefix belongs to the registry's own settings.)

    With REGISTRY_TEST_CLUSTER=1 it is a cluster (``.url`` and ``.host`` are nginx's).
    """
    base = tmp_path_factory.mktemp("registry")
    if CLUSTER_MODE:
        from tests.cluster.topology import standalone_cluster

        with standalone_cluster(base, settings=CLUSTER_SETTINGS) as cluster:
            yield cluster
        return
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
