"""Real clients against a secured registry: HTTPS with a CA made here, users, rules.

skopeo and podman log in, push, pull, and are refused what the rules forbid,
against both the Docker token flow (built-in token service) and Basic auth.
The certificate is verified for real (``--cert-dir``), never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.support import PASSWORDS, Pki, SecureRegistry, auth_config
from tests.clients.clitools import Podman, Skopeo


@pytest.fixture(scope="module", params=["token", "basic"])
def secure(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           pki: Pki) -> Iterator[SecureRegistry]:
    base = tmp_path_factory.mktemp(f"secure-{request.param}")
    server = SecureRegistry(base / "data", {"auth": auth_config(base / "data", request.param)},
                            pki).start()
    server.mode = request.param  # type: ignore[attr-defined]
    yield server
    server.stop()


class Logged:
    """skopeo or podman with an auth file of its own, trusting the test CA."""

    def __init__(self, tool: Skopeo | Podman, authfile: Path, pki: Pki) -> None:
        self.tool = tool
        self.auth = ["--authfile", str(authfile)]
        self.certs = str(pki.cert_dir)

    def login(self, host: str, user: str, password: str | None = None) -> None:
        password = PASSWORDS[user] if password is None else password
        self.tool.run("login", *self.auth, "--cert-dir", self.certs, "-u", user, "-p", password,
                      host)

    def login_fails(self, host: str, user: str, password: str) -> str:
        return self.tool.fails("login", *self.auth, "--cert-dir", self.certs, "-u", user,
                               "-p", password, host).stderr


@pytest.fixture
def sk(skopeo: Skopeo, tmp_path: Path, pki: Pki) -> Logged:
    return Logged(skopeo, tmp_path / "skopeo-auth.json", pki)


@pytest.fixture
def pm(podman: Podman, tmp_path: Path, pki: Pki) -> Logged:
    return Logged(podman, tmp_path / "podman-auth.json", pki)


def skopeo_copy(sk: Logged, src: str, dest: str, check: bool = True):  # type: ignore[no-untyped-def]
    args = ["copy", *sk.auth, "--dest-cert-dir", sk.certs, "--src-cert-dir", sk.certs, src, dest]
    return sk.tool.run(*args) if check else sk.tool.fails(*args)


def skopeo_inspect(sk: Logged, ref: str) -> dict:
    return json.loads(sk.tool.run("inspect", *sk.auth, "--cert-dir", sk.certs, ref).stdout)


def refused(stderr: str) -> bool:
    """The client reports a refusal (clients word 401/403 differently)."""
    text = stderr.lower()
    return any(w in text for w in ("denied", "unauthorized", "403 (forbidden)", "401"))


def test_wrong_password_is_refused_at_login(secure, sk):
    err = sk.login_fails(secure.host, "alice", "not-her-password")
    assert "invalid username/password" in err or "unauthorized" in err.lower(), err


def test_login_push_and_pull_with_skopeo(secure, sk, oci_image, tmp_path):
    sk.login(secure.host, "alice")
    ref = f"docker://{secure.host}/team-a/app:v1"
    skopeo_copy(sk, oci_image.ref, ref)
    info = skopeo_inspect(sk, ref)
    assert info["Digest"] == oci_image.image.digest
    back = tmp_path / "back"
    skopeo_copy(sk, ref, f"oci:{back}:v1")
    assert (back / "index.json").exists()


def test_read_only_user_pulls_but_cannot_push(secure, sk, oci_image):
    alice = Logged(sk.tool, Path(sk.auth[1]).with_name("alice.json"), secure.pki)
    alice.login(secure.host, "alice")
    skopeo_copy(alice, oci_image.ref, f"docker://{secure.host}/team-a/ro:v1")

    sk.login(secure.host, "bob")
    assert skopeo_inspect(sk, f"docker://{secure.host}/team-a/ro:v1")["Digest"] == (
        oci_image.image.digest)
    err = skopeo_copy(sk, oci_image.ref, f"docker://{secure.host}/team-a/ro:v2", check=False)
    assert refused(err.stderr), err.stderr
    # ... and nothing was tagged.
    tags = json.loads(alice.tool.run("list-tags", *alice.auth, "--cert-dir", alice.certs,
                                     f"docker://{secure.host}/team-a/ro").stdout)["Tags"]
    assert tags == ["v1"]


def test_personal_namespace_and_anonymous_pull(secure, sk, skopeo, tmp_path, oci_image):
    sk.login(secure.host, "carol")
    skopeo_copy(sk, oci_image.ref, f"docker://{secure.host}/users/carol/tool:1")
    skopeo_copy(sk, oci_image.ref, f"docker://{secure.host}/public/tool:1")
    err = skopeo_copy(sk, oci_image.ref, f"docker://{secure.host}/users/alice/tool:1",
                      check=False)
    assert refused(err.stderr), err.stderr

    nobody = Logged(skopeo, tmp_path / "nobody.json", secure.pki)
    (tmp_path / "nobody.json").write_text("{}")
    info = skopeo_inspect(nobody, f"docker://{secure.host}/public/tool:1")
    assert info["Digest"] == oci_image.image.digest
    err = nobody.tool.fails("inspect", *nobody.auth, "--cert-dir", nobody.certs,
                            f"docker://{secure.host}/users/carol/tool:1")
    assert "unauthorized" in err.stderr.lower() or "denied" in err.stderr.lower(), err.stderr


def test_podman_login_push_pull_and_denied_push(secure, sk, pm, oci_image):
    sk.login(secure.host, "alice")
    skopeo_copy(sk, oci_image.ref, f"docker://{secure.host}/team-a/pod:v1")

    pm.login(secure.host, "alice")
    policy = ["--signature-policy", pm.tool.policy]  # type: ignore[union-attr]
    name = f"{secure.host}/team-a/pod"
    pm.tool.run("pull", *pm.auth, "--cert-dir", pm.certs, *policy, f"{name}:v1")
    pm.tool.run("push", *pm.auth, "--cert-dir", pm.certs, *policy, f"{name}:v1",
                f"{name}:pushed-by-podman")
    info = skopeo_inspect(sk, f"docker://{name}:pushed-by-podman")
    assert info["Layers"] == oci_image.image.layer_digests

    pm.login(secure.host, "bob")  # bob may only pull team-a
    pm.tool.run("pull", *pm.auth, "--cert-dir", pm.certs, *policy, f"{name}:pushed-by-podman")
    err = pm.tool.fails("push", *pm.auth, "--cert-dir", pm.certs, *policy, f"{name}:v1",
                        f"{name}:by-bob")
    assert refused(err.stderr), err.stderr
