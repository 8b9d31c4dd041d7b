"""Shared pieces of the security tests: a test CA, users, tokens, secure servers."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ociregistry.auth.htpasswd import Htpasswd
from tests.server import RegistryProcess

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret",
             "root": "root-secret"}

# The worked example of the README, more or less.
RULES: list[dict[str, Any]] = [
    {"groups": ["team-a"], "repositories": ["team-a/**"], "actions": ["pull", "push"]},
    {"users": ["bob"], "repositories": ["team-a/**"], "actions": ["pull"]},
    {"users": ["*"], "repositories": ["users/${user}/**"], "actions": ["*"]},
    {"anonymous": True, "users": ["*"], "repositories": ["public/**"], "actions": ["pull"]},
    {"users": ["carol"], "repositories": ["public/**"], "actions": ["push", "delete"]},
    {"users": ["root"], "actions": ["admin"]},
]
GROUPS = {"team-a": ["alice"]}


def basic(user: str, password: str | None = None) -> dict[str, str]:
    password = PASSWORDS[user] if password is None else password
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_htpasswd(path: Path) -> Path:
    users = Htpasswd(str(path))
    for user, password in PASSWORDS.items():
        users.set_password(user, password, cost=4)  # cheap for tests; real cost is 12
    return path


def auth_config(data_dir: Path, mode: str, **extra: Any) -> dict[str, Any]:
    """The auth section for ``mode`` ("basic" or "token") with the test users and rules."""
    htpasswd = write_htpasswd(data_dir.parent / f"htpasswd-{uuid.uuid4().hex[:6]}")
    auth: dict[str, Any] = {"htpasswd": str(htpasswd), "rules": RULES, "groups": GROUPS}
    if mode == "token":
        auth["token"] = {"enabled": True, "service": "test-registry", "issuer": "test-issuer"}
    auth.update(extra)
    return auth


# -- a test PKI -------------------------------------------------------------------
@dataclass
class Pki:
    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    ca_key: Any

    @property
    def cert_dir(self) -> Path:
        """A directory clients take with --cert-dir: the CA as ca.crt."""
        return self.directory / "certs.d"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: Any, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def issue_certificate(ca_key: Any, ca_cert: x509.Certificate, subject: str, key: Any,
                      *, server: bool = False, client: bool = False, ca: bool = False,
                      days: int = 30) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(ca_cert.subject if ca_cert is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if ca_cert is not None:  # strict X.509 checking (Python 3.13, Go) wants these
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(ca_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """A self-signed CA, a server certificate for 127.0.0.1/localhost, a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = issue_certificate(ca_key, None, "ociregistry test CA", ca_key, ca=True)  # type: ignore[arg-type]
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_cert = issue_certificate(ca_key, ca_cert, "127.0.0.1", server_key, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = issue_certificate(ca_key, ca_cert, "test client", client_key, client=True)
    pem = serialization.Encoding.PEM
    paths = {}
    for name, cert in (("ca", ca_cert), ("server", server_cert), ("client", client_cert)):
        paths[name] = directory / f"{name}.crt"
        paths[name].write_bytes(cert.public_bytes(pem))
    _write_key(server_key, directory / "server.key")
    _write_key(client_key, directory / "client.key")
    cert_dir = directory / "certs.d"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    return Pki(directory, paths["ca"], paths["server"], directory / "server.key",
               paths["client"], directory / "client.key", ca_key)


# -- servers ----------------------------------------------------------------------
class SecureRegistry(RegistryProcess):
    """A registry started with a configuration file, over HTTPS when ``pki`` is given.

    Readiness is checked on /healthz (the /v2/ base answers 401 once
    authentication is on).
    """

    def __init__(self, data_dir: Path, config: dict[str, Any], pki: Pki | None = None,
                 workers: int = 2, mtls: bool = False, env: dict[str, str] | None = None
                 ) -> None:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        config = dict(config)
        if pki is not None:
            config["tls"] = {"certificate": str(pki.server_cert), "key": str(pki.server_key)}
            if mtls:
                config["tls"]["client_ca"] = str(pki.ca_cert)
        path = data_dir.parent / f"config-{uuid.uuid4().hex[:8]}.yml"
        path.write_text(yaml.safe_dump(config))
        super().__init__(data_dir, workers=workers, config=path, env=env)
        self.pki = pki
        self.mtls = mtls

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://{self.host}"

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would beat s.verify
        if self.pki is not None:
            s.verify = str(self.pki.ca_cert)
            if self.mtls:
                s.cert = (str(self.pki.client_cert), str(self.pki.client_key))
        return s

    def start(self) -> SecureRegistry:
        cmd = [
            sys.executable, "-m", "ociregistry", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--workers", str(self.workers),
            "--config", str(self.config),
        ]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env},
                                     cwd=str(self.data_dir.parent))
        session = self.session()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_path.read_text()[-3000:]}")
            try:
                if session.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError(f"registry did not start in time: {self.log_path.read_text()[-2000:]}")


def token_for(session: requests.Session, url: str, user: str | None, *scopes: str,
              service: str = "test-registry") -> str:
    """A token from the built-in service (anonymous when user is None)."""
    headers = basic(user) if user else {}
    r = session.get(f"{url}/auth/token", params={"service": service, "scope": list(scopes)},
                    headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def forge(claims: dict[str, Any], key: Any, algorithm: str = "ES256",
          headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def claims(sub: str, access: list[dict[str, Any]], *, iss: str = "test-issuer",
           aud: str = "test-registry", lifetime: int = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out = {"iss": iss, "sub": sub, "aud": aud, "exp": now + lifetime, "nbf": now - 1,
           "iat": now, "jti": uuid.uuid4().hex, "access": access}
    out.update(extra)
    return out
