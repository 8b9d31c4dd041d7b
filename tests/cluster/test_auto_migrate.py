"""database.auto_migrate: serve migrates by default; with false it refuses a schema
that is behind and names the command that fixes it. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ociregistry.metadata.migrate import pending, upgrade
from ociregistry.metadata.store import MetadataStore
from tests.server import RegistryProcess, free_port


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'registry.db'}"
    return request.getfixturevalue("pg_url")


def _ociregistry(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", *args, "--data-dir", str(tmp_path / "data")],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
        cwd=str(tmp_path),
    )


def _behind(url: str) -> None:
    """A schema one migration behind the code."""
    store = MetadataStore(url)
    try:
        upgrade(store, "0002")
        assert pending(store)
    finally:
        store.dispose()


def test_serve_refuses_a_schema_that_is_behind_until_db_upgrade(tmp_path, database_url):
    _behind(database_url)
    env = {"OCIREGISTRY_DATABASE__URL": database_url, "OCIREGISTRY_DATABASE__AUTO_MIGRATE": "false"}
    refused = _ociregistry(tmp_path, env, "serve", "--host", "127.0.0.1",
                           "--port", str(free_port()), "--workers", "1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "schema is behind" in refused.stderr
    assert "ociregistry db upgrade" in refused.stderr
    store = MetadataStore(database_url)
    try:
        assert pending(store)  # serve did not migrate
    finally:
        store.dispose()

    upgraded = _ociregistry(tmp_path, env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    server = RegistryProcess(tmp_path / "data", env=env, workers=1).start()
    try:
        assert requests.get(server.url + "/v2/").status_code == 200
    finally:
        server.stop()


def test_serve_migrates_by_default(tmp_path, database_url):
    _behind(database_url)
    server = RegistryProcess(
        tmp_path / "data", env={"OCIREGISTRY_DATABASE__URL": database_url}, workers=1
    ).start()
    try:
        assert requests.get(server.url + "/v2/").status_code == 200
    finally:
        server.stop()
    store = MetadataStore(database_url)
    try:
        assert not pending(store)
    finally:
        store.dispose()
