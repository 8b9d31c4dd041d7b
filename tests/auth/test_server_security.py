"""The real server (gunicorn): HTTPS, mutual TLS, start-up checks, logs, the user CLI."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.auth.support import (
    PASSWORDS,
    Pki,
    SecureRegistry,
    auth_config,
    basic,
    bearer,
    make_pki,
    token_for,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_https_with_token_auth(tmp_path, pki):
    server = SecureRegistry(tmp_path / "data", {"auth": auth_config(tmp_path / "data", "token")},
                            pki).start()
    try:
        s = server.session()
        r = s.get(server.url + "/v2/")
        assert r.status_code == 401
        # the realm is this server, over HTTPS
        assert f'realm="https://{server.host}/auth/token"' in r.headers["WWW-Authenticate"]
        tok = token_for(s, server.url, "alice", "repository:team-a/app:pull,push")
        data = b"over TLS" * 100000
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = s.post(f"{server.url}/v2/team-a/app/blobs/uploads/", params={"digest": digest},
                   data=data, headers=bearer(tok))
        assert r.status_code == 201, r.text
        assert s.get(f"{server.url}/v2/team-a/app/blobs/{digest}",
                     headers=bearer(tok)).content == data
        # the signing key was generated on first start, private
        key = tmp_path / "data" / "auth" / "token-signing-key.pem"
        assert key.exists() and key.stat().st_mode & 0o077 == 0
        # plain HTTP is not spoken, and an unknown CA is refused by a verifying client
        with pytest.raises(requests.RequestException):
            requests.get(f"http://{server.host}/v2/", timeout=5)
        other = make_pki(tmp_path / "other-pki")
        untrusting = requests.Session()
        untrusting.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            untrusting.get(server.url + "/healthz", verify=str(other.ca_cert), timeout=5)
    finally:
        server.stop()
    log = server.log_path.read_text()
    for secret in (*PASSWORDS.values(), tok.split(".")[1], tok.split(".")[2]):
        assert secret not in log


def test_mutual_tls(tmp_path, pki):
    server = SecureRegistry(tmp_path / "data", {}, pki, mtls=True).start()
    try:
        s = server.session()  # with the client certificate
        assert s.get(server.url + "/v2/").status_code == 200
        bare = requests.Session()
        bare.trust_env = False
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError,
                            ssl.SSLError)):
            bare.get(server.url + "/v2/", verify=str(pki.ca_cert), timeout=5)
    finally:
        server.stop()


def test_basic_auth_over_https_and_no_secrets_in_logs(tmp_path, pki):
    config = {"auth": auth_config(tmp_path / "data", "basic")}
    server = SecureRegistry(tmp_path / "data", config, pki).start()
    try:
        s = server.session()
        assert s.get(server.url + "/v2/", headers=basic("alice")).status_code == 200
        assert s.get(server.url + "/v2/", headers=basic("alice", "Wr0ng-Pa55")).status_code == 401
        s.get(server.url + "/v2/team-a/x/tags/list?password=Qu3ry-Pa55",
              headers=basic("bob", "An0ther-Pa55"))
        s.get(server.url + "/v2/", headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30.x"})
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "/v2/" in log  # the access log is there...
    for secret in ("alice-secret", "Wr0ng-Pa55", "Qu3ry-Pa55", "An0ther-Pa55", "e30.x",
                   "YWxpY2U6"):  # base64 of "alice:"
        assert secret not in log, secret


@pytest.mark.parametrize(("config", "message"), [
    ({"tls": {"certificate": "/nonexistent.pem", "key": "/nonexistent.key"}}, "not found"),
    ({"tls": {"certificate": "CERT"}}, "together"),
    ({"tls": {"certificate": "CERT", "key": "CA"}}, "cannot load"),
    ({"auth": {"token": {"jwks": "/nonexistent.json", "realm": "https://x"}}}, "authentication"),
    ({"auth": {"token": {"jwks": "JWKS"}}}, "realm"),
])
def test_bad_security_settings_stop_the_start(tmp_path, pki, config, message):
    import yaml

    (tmp_path / "jwks.json").write_text('{"keys": []}')
    text = yaml.safe_dump(config).replace("CERT", str(pki.server_cert)) \
        .replace("CA", str(pki.ca_cert)).replace("JWKS", str(tmp_path / "jwks.json"))
    (tmp_path / "config.yml").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "ociregistry", "serve", "--port", "0", "--data-dir",
         str(tmp_path / "data"), "--config", str(tmp_path / "config.yml")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout, proc.stderr


def test_tls_flags(tmp_path, pki):
    from ociregistry.cli import _settings, build_parser

    args = build_parser().parse_args(["serve", "--tls-cert", str(pki.server_cert),
                                      "--tls-key", str(pki.server_key)])
    settings = _settings(args)
    assert settings.tls.certificate == str(pki.server_cert)
    assert settings.tls.key == str(pki.server_key)


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ociregistry", "user", *args],
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_user_commands(tmp_path: Path):
    from ociregistry.auth.htpasswd import Htpasswd

    path = str(tmp_path / "htpasswd")
    add = run_cli("add", "dave", "--htpasswd", path, "--password-stdin", "--cost", "4",
                  stdin="first pass\n")
    assert add.returncode == 0, add.stderr
    assert "first pass" not in add.stdout + add.stderr
    assert run_cli("add", "dave", "--htpasswd", path, stdin="x\n").returncode == 1
    assert run_cli("add", "anonymous", "--htpasswd", path, stdin="x\n").returncode == 1
    assert Htpasswd(path).verify("dave", "first pass")
    assert run_cli("passwd", "dave", "--htpasswd", path, "--cost", "4",
                   stdin="second\n").returncode == 0
    assert Htpasswd(path).verify("dave", "second")
    assert not Htpasswd(path).verify("dave", "first pass")
    assert run_cli("passwd", "erin", "--htpasswd", path, stdin="x\n").returncode == 1
    assert run_cli("list", "--htpasswd", path).stdout.split() == ["dave"]
    # htpasswd -B entries are read as they are
    content = Path(path).read_text()
    assert content.startswith("dave:$2b$04$")
    assert run_cli("remove", "dave", "--htpasswd", path).returncode == 0
    assert run_cli("list", "--htpasswd", path).stdout.split() == []
    # the cost comes from the configuration
    (tmp_path / "c.yml").write_text(f"auth: {{htpasswd: {path}, bcrypt_cost: 5}}\n")
    assert run_cli("add", "frank", "--config", str(tmp_path / "c.yml"),
                   stdin="pw\n").returncode == 0
    assert "frank:$2b$05$" in Path(path).read_text()
    assert run_cli("list").returncode == 1  # no file configured: a clear error


def test_files_written_by_apache_htpasswd_are_read(tmp_path):
    from ociregistry.auth.htpasswd import Htpasswd
    from tests.clients.clitools import require_binary

    path = tmp_path / "htpasswd"
    binary = require_binary("htpasswd")  # apache2-utils; run-tests.sh installs it
    subprocess.run([binary, "-B", "-C", "4", "-b", "-c", str(path), "grace", "hopper"],
                   check=True, capture_output=True)
    users = Htpasswd(str(path))
    assert users.users() == ["grace"]
    assert users.verify("grace", "hopper") and not users.verify("grace", "Hopper")


def test_request_header_size_limit(tmp_path):
    server = SecureRegistry(tmp_path / "data", {"limits": {"max_header_size": 2048}}).start()
    try:
        s = server.session()
        assert s.get(server.url + "/v2/", headers={"X-Big": "a" * 1500}).status_code == 200
        assert s.get(server.url + "/v2/", headers={"X-Big": "a" * 4000}).status_code == 431
    finally:
        server.stop()
