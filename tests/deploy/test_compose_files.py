"""deploy/docker-compose.yml passes `docker-compose config` (1.29, Debian's: no Docker
engine needed), names only real settings, requires sign-in, ships no secret and
publishes the registry only.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ociregistry.auth.htpasswd import Htpasswd
from tests.deploy.support import (
    COMPOSE,
    DEPLOY,
    NGINX_CONF,
    SECRET_NAME,
    settings_of,
    tool,
    upstream_hosts,
)

# -- docker-compose -----------------------------------------------------------------


# The variables deploy/docker-compose.yml requires (it has no default for any secret).
COMPOSE_SECRETS = ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "REGISTRY_UI_SECRET_KEY",
                   "REGISTRY_HTPASSWD_FILE")
# Names of settings and variables that hold a secret.


def _compose_secrets(directory: Path) -> dict[str, str]:
    """A fresh random value for every secret, and an htpasswd file."""
    htpasswd = directory / "htpasswd"
    htpasswd.write_text("admin:$2b$04$" + "x" * 53 + "\n")
    return {
        "POSTGRES_PASSWORD": secrets.token_hex(12), "S3_ACCESS_KEY": secrets.token_hex(8),
        "S3_SECRET_KEY": secrets.token_hex(12), "REGISTRY_UI_SECRET_KEY": secrets.token_hex(16),
        "REGISTRY_HTPASSWD_FILE": str(htpasswd),
    }


def _compose(*args: str, tmp_path: Path, environ: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    docker_compose = tool("docker-compose", "docker-compose")
    # Only what docker-compose needs, so the file's own defaults are what is checked.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           **(environ or {})}
    return subprocess.run(
        [docker_compose, "--project-directory", str(DEPLOY), "-f", str(COMPOSE), *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )


def _resolved(tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    environ = _compose_secrets(tmp_path)
    result = _compose("config", tmp_path=tmp_path, environ=environ)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout), environ


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory) -> dict[str, Any]:
    """The compose file as docker-compose resolves it (with the required secrets given)."""
    return _resolved(tmp_path_factory.mktemp("compose"))[0]


def _registry_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service for name, service in config["services"].items()
        if any(key.startswith("OCIREGISTRY_") for key in service.get("environment") or {})
    }


def _secret_values(config: dict[str, Any]) -> dict[str, str]:
    """Every secret of the resolved file, by "service.VARIABLE" (passwords in URLs too)."""
    found = {}
    for name, service in config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                found[f"{name}.{key}"] = value
            password = urlsplit(value).password if "://" in value else None
            if password:
                found[f"{name}.{key} (password)"] = password
    return found


def test_compose_file_passes_docker_compose_config(tmp_path):
    result = _compose("config", "-q", tmp_path=tmp_path, environ=_compose_secrets(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "version" not in yaml.safe_load(COMPOSE.read_text())  # the Compose Specification


@pytest.mark.parametrize("missing", COMPOSE_SECRETS)
def test_compose_refuses_to_start_without_each_secret(tmp_path, missing):
    environ = _compose_secrets(tmp_path)
    del environ[missing]
    result = _compose("config", "-q", tmp_path=tmp_path, environ=environ)
    assert result.returncode != 0, f"starts without {missing}"
    assert missing in result.stderr and "make-secrets.sh" in result.stderr, result.stderr


def test_compose_ships_no_secret(tmp_path):
    """Resolved twice with different secrets: any secret that stays the same is fixed."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, given = _resolved(tmp_path / "a")
    second, _ = _resolved(tmp_path / "b")
    one, two = _secret_values(first), _secret_values(second)
    assert one.keys() == two.keys()
    fixed = {key: value for key, value in one.items() if two[key] == value}
    assert not fixed, f"secrets with a value of the file's own: {fixed}"
    # and each one is a value given from outside
    assert set(one.values()) <= set(given.values()), one
    # A variable of a secret has no default (a default is what a forgotten .env gets).
    for name, form in re.findall(r"\$\{(\w+)(\W?)", COMPOSE.read_text()):
        if SECRET_NAME.search(name) or name in COMPOSE_SECRETS:
            assert form in (":", "?"), f"${{{name}}}: not required"
    for name, rest in re.findall(r"\$\{(\w+)(:?[-?][^}]*)\}", COMPOSE.read_text()):
        if SECRET_NAME.search(name) or name in COMPOSE_SECRETS:
            assert rest.lstrip(":").startswith("?"), f"${{{name}{rest}}}: a default secret"


def test_compose_requires_sign_in(compose_config, tmp_path):
    for name, service in _registry_services(compose_config).items():
        environ = {k: str(v) for k, v in service["environment"].items()}
        settings = settings_of(None, environ, tmp_path)
        assert settings.auth.mode != "none", f"{name}: no authentication"
        assert settings.auth.htpasswd == "/run/secrets/htpasswd", name
        assert [s["source"] for s in service["secrets"]] == ["htpasswd"], name
        assert any("admin" in rule.actions for rule in settings.auth.rules), name
        assert not any(rule.anonymous for rule in settings.auth.rules), name
    htpasswd = compose_config["secrets"]["htpasswd"]["file"]
    assert Path(htpasswd).name == "htpasswd", htpasswd


def test_compose_publishes_the_registry_only(compose_config):
    published = {name for name, service in compose_config["services"].items()
                 if service.get("ports")}
    assert published == {"nginx"}, published
    for name, service in _registry_services(compose_config).items():
        # Blobs stream through the registry: clients never need the store's port.
        assert service["environment"]["OCIREGISTRY_STORAGE__S3__REDIRECT"] == "false", name


def test_make_secrets_writes_what_compose_needs(tmp_path):
    """deploy/make-secrets.sh: a .env and an htpasswd that compose accepts, never twice."""
    script = tmp_path / "make-secrets.sh"
    shutil.copy(DEPLOY / "make-secrets.sh", script)
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["sh", str(script), "root"], capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    password = re.search(r"sign in as: root\s+password: (\S+)", result.stdout).group(1)
    assert Htpasswd(str(tmp_path / "secrets" / "htpasswd")).verify("root", password)
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    environ = dict(line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines())
    assert set(COMPOSE_SECRETS) <= environ.keys() and environ["REGISTRY_ADMIN"] == "root"
    environ["REGISTRY_HTPASSWD_FILE"] = str(tmp_path / "secrets" / "htpasswd")
    result = _compose("config", tmp_path=tmp_path, environ=environ)
    assert result.returncode == 0, result.stderr
    rules = yaml.safe_load(result.stdout)["services"]["registry-1"]["environment"][
        "OCIREGISTRY_AUTH__RULES"]
    assert {"users": ["root"], "actions": ["admin"]} in yaml.safe_load(rules)
    # A second run overwrites nothing.
    again = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=120,
                           env=env)
    assert again.returncode != 0 and "not overwritten" in again.stderr
    assert Htpasswd(str(tmp_path / "secrets" / "htpasswd")).verify("root", password)


def test_compose_registry_variables_are_real_settings(compose_config, tmp_path):
    services = _registry_services(compose_config)
    assert {"registry-init", "registry-1", "registry-2", "registry-3"} <= set(services)
    loaded = {}
    for name, service in services.items():
        environ = {k: str(v) for k, v in service["environment"].items()}
        settings = settings_of(None, environ, tmp_path)
        assert settings.storage.driver == "s3", name
        assert settings.storage.s3.bucket and settings.storage.s3.endpoint_url, name
        assert settings.database_url.startswith("postgresql+psycopg://"), name
        assert settings.database.auto_migrate is False, name
        assert settings.http.trusted_proxies and settings.ui.secret_key, name
        assert settings.http.workers > 0, name  # the default would count the host's cores
        loaded[name] = settings
    # Identical instances: the same settings everywhere (the UI key included).
    assert len({s.model_dump_json() for s in loaded.values()}) == 1


def test_compose_topology(compose_config):
    services = compose_config["services"]
    registries = sorted(n for n in _registry_services(compose_config) if n != "registry-init")
    assert len(registries) >= 2
    assert sorted(upstream_hosts(NGINX_CONF.read_text())) == registries
    for name in registries:
        assert services[name]["depends_on"]["registry-init"] == {
            "condition": "service_completed_successfully"}
        assert "ports" not in services[name], f"{name}: reachable only through nginx"
    init = services["registry-init"]
    assert init["restart"] == "no"
    assert "db" in init["command"][0] and "upgrade" in init["command"][0]
    assert services["postgres"]["image"].split(":")[1].startswith("15")
    mounts = [v for v in services["nginx"]["volumes"] if ":/etc/nginx/conf.d/" in v]
    assert mounts and Path(mounts[0].split(":")[0]) == NGINX_CONF
    # The registry-init script is valid Python.
    compile(init["command"][0], "registry-init", "exec")


