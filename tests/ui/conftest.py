"""Fixtures for the UI tests: Flask apps (with and without authentication) and data."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ociregistry.auth.htpasswd import Htpasswd
from ociregistry.config import load_settings
from ociregistry.runtime import Runtime, build_runtime
from ociregistry.web.app import create_app

# Real-client fixtures (skopeo, OCI layouts) for the browser tests, reused as they are.
from tests.clients.conftest import (  # noqa: F401
    client_env,
    client_home,
    oci_index,
    salt,
    skopeo,
)
from tests.ui import seed

PASSWORDS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw"}
AUTH_RULES = [
    {"users": ["admin"], "actions": ["admin"]},
    {"users": ["alice"], "repositories": ["team/**"], "actions": ["pull", "push", "delete"]},
    {"users": ["bob"], "repositories": ["team/**"], "actions": ["pull"]},
    {"anonymous": True, "repositories": ["public/*"], "actions": ["pull"]},
]


def write_htpasswd(path: Path, passwords: dict[str, str]) -> Path:
    users = Htpasswd(str(path))
    for user, password in passwords.items():
        users.set_password(user, password, cost=4)
    return path


def make_app(tmp_path: Path, **overrides: Any) -> tuple[Flask, Runtime]:
    settings = load_settings(
        overrides={"data_dir": str(tmp_path / "data"), **overrides}, environ={}
    )
    runtime = build_runtime(settings, migrate=True)
    app = create_app(runtime=runtime)
    app.config["TESTING"] = True
    return app, runtime


@pytest.fixture
def open_app(tmp_path: Path) -> Iterator[tuple[Flask, Runtime]]:
    """No authentication configured: everyone may do everything."""
    # No restore window either: what a test deletes, GC frees (tests/lifecycle_tags).
    app, runtime = make_app(tmp_path, gc={"grace_period_seconds": 0},
                            tags={"restore_window_seconds": 0})
    yield app, runtime
    runtime.metadata.dispose()


@pytest.fixture
def client(open_app: tuple[Flask, Runtime]) -> FlaskClient:
    return open_app[0].test_client()


@pytest.fixture
def auth_app(tmp_path: Path) -> Iterator[tuple[Flask, Runtime]]:
    """htpasswd users and access rules (AUTH_RULES)."""
    htpasswd = write_htpasswd(tmp_path / "htpasswd", PASSWORDS)
    app, runtime = make_app(
        tmp_path,
        gc={"grace_period_seconds": 0},
        tags={"restore_window_seconds": 0},
        auth={"htpasswd": str(htpasswd), "rules": AUTH_RULES},
    )
    yield app, runtime
    runtime.metadata.dispose()


def basic(user: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def csrf_of(client: FlaskClient, path: str = "/ui/login") -> str:
    """The session's CSRF token, as a page's form carries it."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def sign_in(client: FlaskClient, user: str, next_url: str = "/ui/") -> None:
    token = csrf_of(client)
    r = client.post("/ui/login", data={"username": user, "password": PASSWORDS[user],
                                        "csrf_token": token, "next": next_url})
    assert r.status_code == 303, r.get_data(as_text=True)[:2000]


@pytest.fixture
def seeded(client: FlaskClient) -> seed.Seeded:
    return seed.standard(client)
