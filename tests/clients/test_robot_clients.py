"""Robot accounts with real clients, over HTTPS with a CA made here.

A robot token from ``ociregistry token create`` is a password skopeo and
podman take as they are: skopeo copies an image with ``--dest-creds``, a push
outside the token's scope is refused, and after ``ociregistry token revoke``
the same credentials are refused. Both the Docker token flow and Basic auth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.auth.support import RULES, Pki, SecureRegistry, auth_config
from tests.clients.clitools import Podman, Skopeo

ROBOT_RULES = RULES + [
    {"groups": ["robots"], "repositories": ["**"], "actions": ["pull", "push", "delete"]},
]


@pytest.fixture(scope="module", params=["token", "basic"])
def secure(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           pki: Pki) -> Iterator[SecureRegistry]:
    base = tmp_path_factory.mktemp(f"robots-{request.param}")
    config = {"auth": auth_config(base / "data", request.param, rules=ROBOT_RULES)}
    server = SecureRegistry(base / "data", config, pki).start()
    yield server
    server.stop()


def token_cli(server: SecureRegistry, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ociregistry", "token", *args, "--config", str(server.config),
         "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def refused(stderr: str) -> bool:
    text = stderr.lower()
    return any(w in text for w in ("denied", "unauthorized", "403 (forbidden)", "401"))


def copy(skopeo: Skopeo, pki: Pki, src: str, dest: str, creds: str, check: bool = True):  # type: ignore[no-untyped-def]
    args = ["copy", "--src-cert-dir", str(pki.cert_dir), "--dest-cert-dir", str(pki.cert_dir),
            "--dest-creds", creds, src, dest]
    return skopeo.run(*args) if check else skopeo.fails(*args)


def test_skopeo_copies_with_a_robot_token_until_it_is_revoked(secure, skopeo, pki, oci_image,
                                                               tmp_path):
    made = json.loads(token_cli(secure, "create", "ci", "--scope", "ci/**:pull,push",
                                "--expires", "1d", "--json"))
    creds = f"robot$ci:{made['token']}"
    host = secure.host
    copy(skopeo, pki, oci_image.ref, f"docker://{host}/ci/app:v1", creds)
    info = json.loads(skopeo.run("inspect", "--cert-dir", str(pki.cert_dir), "--creds", creds,
                                 f"docker://{host}/ci/app:v1").stdout)
    assert info["Digest"] == oci_image.image.digest

    # Outside the token's scope (the rules would allow it): refused.
    err = copy(skopeo, pki, oci_image.ref, f"docker://{host}/elsewhere/app:v1", creds,
               check=False)
    assert refused(err.stderr), err.stderr

    token_cli(secure, "revoke", made["id"])
    err = copy(skopeo, pki, oci_image.ref, f"docker://{host}/ci/app:v2", creds, check=False)
    assert refused(err.stderr), err.stderr
    err = skopeo.fails("inspect", "--cert-dir", str(pki.cert_dir), "--creds", creds,
                       f"docker://{host}/ci/app:v1")
    assert refused(err.stderr), err.stderr


def test_podman_and_skopeo_log_in_with_a_robot_token(secure, skopeo, podman, pki, tmp_path):
    made = json.loads(token_cli(secure, "create", "builder", "--scope", "ci/**:pull",
                                "--json"))
    for tool, authfile in ((skopeo, tmp_path / "skopeo.json"),
                           (podman, tmp_path / "podman.json")):
        tool.run("login", "--authfile", str(authfile), "--cert-dir", str(pki.cert_dir),
                 "-u", "robot$builder", "-p", made["token"], secure.host)
        err = tool.fails("login", "--authfile", str(authfile), "--cert-dir", str(pki.cert_dir),
                         "-u", "robot$builder", "-p", made["token"] + "x", secure.host)
        assert refused(err.stderr) or "invalid" in err.stderr.lower(), err.stderr
    assert isinstance(podman, Podman)
