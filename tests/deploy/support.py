"""What the tests of the shipped deployment files share: paths, tools, settings.

A missing tool is a failure, not a skip: run-tests.sh installs them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ociregistry.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "registry.conf"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest and the newest Kubernetes the manifests are checked against.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
# Manifests deliberately left out of kustomization.yaml (applied on their own).
APPLIED_SEPARATELY = {"migrate-job.yaml"}
TLS_BEGIN = "# --- BEGIN TLS EXAMPLE"
TLS_END = "# --- END TLS EXAMPLE"


def tool(name: str, package: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (run-tests.sh does)")
    return found


def settings_of(config: dict[str, Any] | None, environ: dict[str, str], tmp_path: Path) -> Settings:
    """Load like `ociregistry serve` does; ConfigError names any unknown key."""
    config_file = tmp_path / "config.yml"
    config_file.write_text(yaml.safe_dump(config or {}))
    try:
        return load_settings(str(config_file), environ=environ)
    except ConfigError as exc:
        pytest.fail(f"not a valid registry configuration: {exc}")


# Setting names that hold secrets.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|KEY_ID|TOKEN|PRIVATE", re.I)


def upstream_hosts(text: str) -> list[str]:
    upstream = re.search(r"upstream\s+ociregistry\s*\{(.*?)\}", text, re.S)
    assert upstream, "no upstream ociregistry block"
    return re.findall(r"^\s*server\s+([\w.-]+):5000\b", upstream.group(1), re.M)


DEBIAN_NGINX = Path("/etc/nginx")
NGINX_DEBIAN_CONF = DEPLOY / "nginx" / "debian.conf"


def debian_nginx_copy(dest: Path, default_site_port: int | None = None) -> Path:
    """A copy of Debian's /etc/nginx under ``dest``; the path of its nginx.conf.

    Everything Debian's files name absolutely (includes, pid, logs) points into the
    copy, so an nginx started on it touches nothing of the machine's. Debian's default
    site stays enabled; on ``default_site_port`` instead of 80 when given (port 80 may
    be someone else's).
    """
    if not (DEBIAN_NGINX / "nginx.conf").is_file():
        pytest.fail("Debian's nginx is not installed: apt-get install nginx (run-tests.sh does)")
    etc = dest / "etc-nginx"
    shutil.copytree(DEBIAN_NGINX, etc, symlinks=True)
    (dest / "log").mkdir(exist_ok=True)
    main = etc / "nginx.conf"
    text = main.read_text().replace(str(DEBIAN_NGINX) + "/", f"{etc}/")
    text = re.sub(r"(?m)^pid\s+\S+;", f"pid {dest}/nginx.pid;", text)
    text = text.replace("/var/log/nginx/", f"{dest}/log/")
    main.write_text(text)
    default = etc / "sites-enabled" / "default"
    if default.is_symlink():  # Debian links it to sites-available: make it a file of ours
        target = (DEBIAN_NGINX / "sites-enabled" / os.readlink(default)).resolve()
        default.unlink()
        default.write_text(target.read_text())
    if default_site_port is not None:
        site = re.sub(r"(?m)^(\s*listen\s+(?:\[::\]:)?)80(\s)", rf"\g<1>{default_site_port}\2",
                      default.read_text())
        default.write_text(site)
    return main
