"""Real upstream registries for the mirror tests, and the images to seed them with.

- ``DistributionUpstream``: CNCF Distribution (Debian ``docker-registry`` 2.8.2) on a
  free loopback port, optionally with htpasswd users and/or HTTPS with a CA made by
  the test; its access log (combined format, on stdout) is kept so tests can count
  what reached upstream.
- ``TokenUpstream``: a second instance of this registry in token mode (a real Bearer
  realm/service/scope dance for whoever pulls from it), access log on.
- ``seed``: pushes an OCI layout with skopeo (multi-layer and multi-arch images from
  tests/clients/images.py, or ``write_layered`` for N layers).

Everything listens on 127.0.0.1; nothing here touches the machine's own services.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.auth.support import PASSWORDS, Pki, SecureRegistry, write_htpasswd
from tests.clients import images
from tests.clients.clitools import Skopeo
from tests.distribution import Distribution, distribution_binary

UPSTREAM_USER = "alice"  # one of tests/auth/support.PASSWORDS
START_TIMEOUT = 90


@dataclass(frozen=True)
class Hit:
    """One request as an upstream's access log records it."""

    method: str
    path: str
    status: int


# Distribution (gorilla CombinedLoggingHandler): ... "GET /v2/x HTTP/1.1" 200 123 "-" "ua"
_COMBINED = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (\S+) HTTP/[\d.]+" (\d{3})')
# This registry (web/observability.py): ociregistry.access CLIENT METHOD PATH STATUS ...
_OURS = re.compile(r"ociregistry\.access \S+ (GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) "
                   r"(\S+) (\d{3}) ")


class AccessLog:
    """Reads the requests a server logged after a mark (a byte offset in its log)."""

    def __init__(self, path: Path, pattern: re.Pattern[str]) -> None:
        self.path = path
        self.pattern = pattern

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def since(self, mark: int, settle: float = 1.0) -> list[Hit]:
        """The requests logged after ``mark``; waits until the log stops growing
        (servers log when the body is sent, a moment after the client has it)."""
        size, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(settle)
            now = self.path.stat().st_size
            if now == size:
                break
            size = now
        with open(self.path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return [Hit(m.group(1), m.group(2), int(m.group(3)))
                for m in map(self.pattern.search, text.splitlines()) if m]

    def repo_hits(self, mark: int, repo: str) -> list[Hit]:
        """Requests for one repository's manifests, blobs or tags (not the /v2/ ping)."""
        prefix = f"/v2/{repo}/"
        return [h for h in self.since(mark) if h.path.split("?", 1)[0].startswith(prefix)]


def registry_access_log(path: Path) -> AccessLog:
    """The access log of this registry (a RegistryProcess's log file)."""
    return AccessLog(path, _OURS)


class DistributionUpstream(Distribution):
    """Distribution with its access log on; htpasswd users and HTTPS when asked."""

    def __init__(self, base: Path, *, htpasswd: bool = False, pki: Pki | None = None,
                 proxy_url: str | None = None, proxy_auth: tuple[str, str] | None = None
                 ) -> None:
        base.mkdir(parents=True, exist_ok=True)
        super().__init__(base)
        self.htpasswd = write_htpasswd(base / "htpasswd") if htpasswd else None
        self.pki = pki
        self.proxy_url = proxy_url  # Distribution's own pull-through mode (for the bench)
        self.proxy_auth = proxy_auth
        self.access = AccessLog(self.log_path, _COMBINED)

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://{self.host}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        return (UPSTREAM_USER, PASSWORDS[UPSTREAM_USER]) if self.htpasswd else None

    def _config(self) -> dict[str, Any]:
        config = super()._config()
        config["log"] = {"level": "info", "accesslog": {"disabled": False}}
        if self.htpasswd:
            config["auth"] = {"htpasswd": {"realm": "upstream", "path": str(self.htpasswd)}}
        if self.pki:
            config["http"]["tls"] = {"certificate": str(self.pki.server_cert),
                                     "key": str(self.pki.server_key)}
        if self.proxy_url:
            config["proxy"] = {"remoteurl": self.proxy_url}
            if self.proxy_auth:
                config["proxy"]["username"], config["proxy"]["password"] = self.proxy_auth
        return config

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        if self.pki:
            s.verify = str(self.pki.ca_cert)
        if self.credentials:
            s.auth = self.credentials
        return s

    def start(self) -> DistributionUpstream:
        config = self.base / "distribution.yml"
        config.write_text(yaml.safe_dump(self._config()))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([distribution_binary(), "serve", str(config)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        session = self.session()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"distribution exited: {self.tail()}")
            try:
                if session.get(f"{self.url}/v2/", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"distribution did not start: {self.tail()}")

    def skopeo_args(self) -> list[str]:
        """What skopeo needs to push here: credentials and the CA."""
        args = []
        if self.credentials:
            args += ["--dest-creds", ":".join(self.credentials)]
        if self.pki:
            args += ["--dest-cert-dir", str(self.pki.cert_dir)]
        return args


# Pull for the mirror's user on everything; the rest of the test rules stay.
TOKEN_RULES = [{"users": [UPSTREAM_USER], "repositories": ["**"], "actions": ["pull", "push"]}]


class TokenUpstream(SecureRegistry):
    """This registry in token mode: clients get 401 + Bearer realm, fetch a token, retry."""

    def __init__(self, base: Path, pki: Pki | None = None) -> None:
        data = base / "data"
        data.mkdir(parents=True, exist_ok=True)
        htpasswd = write_htpasswd(base / "htpasswd")
        config = {
            "auth": {"htpasswd": str(htpasswd), "rules": TOKEN_RULES,
                     "token": {"enabled": True, "service": "upstream-registry",
                               "issuer": "upstream-issuer"}},
            "log": {"access_log": True},
        }
        super().__init__(data, config, pki)
        self.access = registry_access_log(self.log_path)

    @property
    def credentials(self) -> tuple[str, str]:
        return (UPSTREAM_USER, PASSWORDS[UPSTREAM_USER])

    def skopeo_args(self) -> list[str]:
        args = ["--dest-creds", ":".join(self.credentials)]
        if self.pki:
            args += ["--dest-cert-dir", str(self.pki.cert_dir)]
        return args

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


Upstream = DistributionUpstream | TokenUpstream


# -- images -------------------------------------------------------------------------
def write_layered(layout: Path, salt: str, layers: int, tag: str = "latest",
                  layer_size: int = 64 * 1024) -> images.Image:
    """An OCI image of ``layers`` layers (one file each, incompressible) in a layout."""
    built: list[images.Layer] = []
    for i in range(layers):
        tar = images.make_tar([images.Entry(f"layer{i}", kind="dir"), images.Entry(
            f"layer{i}/data.bin", images.pseudo_random(f"{salt}/{i}", layer_size))])
        built.append(images.Layer(tar=tar, blob=images.gzip_bytes(tar),
                                  created_by=f"RUN make layer {i}"))
    config = images.canonical({
        "created": images.CREATED, "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"org.example.salt": salt}},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
        "history": [{"created": images.CREATED, "created_by": layer.created_by}
                    for layer in built],
    })
    manifest = images.canonical({
        "schemaVersion": 2, "mediaType": images.OCI_MANIFEST,
        "config": images.descriptor(images.OCI_CONFIG, config),
        "layers": [images.descriptor(images.OCI_LAYER_GZIP, layer.blob) for layer in built],
    })
    image = images.Image(manifest, config, built, {}, {}, [], {"architecture": "amd64",
                                                                "os": "linux"})
    images.write_blobs(layout, image.blobs())
    images.write_layout(layout, {tag: images.descriptor(images.OCI_MANIFEST, manifest)})
    return image


def seed(upstream: Upstream, skopeo: Skopeo, layout: Path, tag: str, repo: str,
         dest_tag: str, *options: str) -> None:
    """Push ``layout:tag`` to ``upstream`` as ``repo:dest_tag`` (``--all`` for an index)."""
    skopeo.run("copy", "--dest-tls-verify=" + ("true" if upstream.pki else "false"),
               *upstream.skopeo_args(), *options,
               f"oci:{layout}:{tag}", f"docker://{upstream.host}/{repo}:{dest_tag}")


def upstream_manifest(upstream: Upstream, repo: str, ref: str) -> tuple[bytes, str]:
    """(bytes, digest) of a manifest as upstream serves it (through its auth)."""
    from tests.distribution import ACCEPT

    session = upstream.session()
    url = f"{upstream.url}/v2/{repo}/manifests/{ref}"
    r = session.get(url, headers={"Accept": ACCEPT}, timeout=60)
    if r.status_code == 401 and "Bearer" in r.headers.get("WWW-Authenticate", ""):
        token = _bearer(session, r.headers["WWW-Authenticate"], upstream.credentials)
        r = session.get(url, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"},
                        timeout=60)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return r.content, r.headers["Docker-Content-Digest"]


def _bearer(session: requests.Session, challenge: str, creds: tuple[str, str]) -> str:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm")
    r = session.get(realm, params=params, auth=creds, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    return body.get("token") or body["access_token"]
