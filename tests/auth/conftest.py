"""In-process registries (Flask test client) with authentication configured."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from ociregistry.config import load_settings
from ociregistry.runtime import build_runtime
from ociregistry.web.app import create_app
from tests.auth.support import auth_config

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Registry:
    """A test client plus the pieces tests look into."""

    def __init__(self, client: FlaskClient, runtime: Any) -> None:
        self.client = client
        self.runtime = runtime

    @property
    def auth(self) -> Any:
        return self.client.application.extensions["ociregistry.auth"]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def build(tmp_path: Path, mode: str | None, **settings: Any) -> Registry:
    data = tmp_path / "data"
    overrides: dict[str, Any] = {"data_dir": str(data)}
    if mode:
        overrides["auth"] = auth_config(data, mode, **settings.pop("auth", {}))
    overrides.update(settings)
    runtime = build_runtime(load_settings(environ={}, overrides=overrides), migrate=True)
    return Registry(create_app(runtime=runtime).test_client(), runtime)


@pytest.fixture
def make_registry(tmp_path: Path) -> Callable[..., Registry]:
    counter = iter(range(1000))

    def factory(mode: str | None, **settings: Any) -> Registry:
        return build(tmp_path / f"r{next(counter)}", mode, **settings)

    return factory


@pytest.fixture
def basic_registry(make_registry) -> Registry:
    return make_registry("basic")


@pytest.fixture
def token_registry(make_registry) -> Registry:
    return make_registry("token")


def blob() -> tuple[bytes, str]:
    data = os.urandom(64)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()
