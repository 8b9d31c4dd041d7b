"""Upstreams that want credentials: this registry in token mode (a real Bearer
token dance) and CNCF Distribution with htpasswd (Basic)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.auth.support import PASSWORDS, SecureRegistry, auth_config, make_pki, write_htpasswd
from tests.distribution import Distribution
from tests.helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, assert_error, sha256
from tests.mirror.support import AccessLog, start_mirror
from tests.mirror.test_pull_through import ACCEPT
from tests.server import RegistryProcess


def push(url: str, repo: str, tag: str, headers: dict[str, str] | None = None,
         auth: Any = None, session: Any = requests) -> tuple[dict, str]:
    """Push a small image with these credentials; (manifest, digest)."""
    blobs = [json.dumps({"os": "linux", "architecture": "amd64",
                         "n": uuid.uuid4().hex}).encode(), uuid.uuid4().bytes * 64]
    for data in blobs:
        r = session.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)},
                          data=data, headers=headers, auth=auth, timeout=60)
        if r.status_code == 202:  # Distribution: no monolithic POST; PUT to the session
            location = r.headers["Location"]
            location = location if location.startswith("http") else url + location
            r = session.put(location, params={"digest": sha256(data)}, data=data,
                             headers=headers, auth=auth, timeout=60)
        assert r.status_code == 201, r.text
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(blobs[0]),
                           "size": len(blobs[0])},
                "layers": [{"mediaType": OCI_LAYER, "digest": sha256(blobs[1]),
                            "size": len(blobs[1])}]}
    r = session.put(f"{url}/v2/{repo}/manifests/{tag}", data=json.dumps(manifest),
                     headers={**(headers or {}), "Content-Type": OCI_MANIFEST}, auth=auth,
                     timeout=60)
    assert r.status_code == 201, r.text
    return manifest, r.headers["Docker-Content-Digest"]


@pytest.fixture(scope="module")
def token_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    base: Path = tmp_path_factory.mktemp("token-upstream")
    config = base / "config.yml"
    config.write_text(yaml.safe_dump({"auth": auth_config(base / "data", "token")}))
    server = RegistryProcess(base / "data", workers=1, config=config).start()
    yield server
    server.stop()


class HtpasswdDistribution(Distribution):
    def _config(self) -> dict[str, Any]:
        config = super()._config()
        htpasswd = write_htpasswd(self.base / "htpasswd")
        config["auth"] = {"htpasswd": {"realm": "test", "path": str(htpasswd)}}
        return config


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    server = HtpasswdDistribution(tmp_path_factory.mktemp("distribution"))
    # /v2/ answers 401 with htpasswd: Distribution.start waits for a 200.
    server.start = _start_accepting_401(server)  # type: ignore[method-assign]
    yield server.start()
    server.stop()


def _start_accepting_401(server: Distribution):
    original = Distribution.start

    def start() -> Distribution:
        real_get = requests.get

        def get(url: str, **kwargs: Any) -> requests.Response:
            kwargs.setdefault("auth", ("alice", PASSWORDS["alice"]))
            return real_get(url, **kwargs)

        requests.get = get  # type: ignore[assignment]
        try:
            return original(server)
        finally:
            requests.get = real_get  # type: ignore[assignment]

    return start


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, token_upstream: RegistryProcess,
           distribution: Distribution) -> Iterator[RegistryProcess]:
    server = start_mirror(tmp_path_factory.mktemp("auth-mirror"), [
        {"name": "tok", "url": token_upstream.url, "username": "alice",
         "password": PASSWORDS["alice"]},
        {"name": "tokanon", "url": token_upstream.url},
        {"name": "dist", "url": distribution.url, "username": "alice",
         "password": PASSWORDS["alice"]},
        {"name": "distanon", "url": distribution.url},
    ])
    yield server
    server.stop()


def token_for(upstream: RegistryProcess, scope: str, user: str = "alice") -> dict[str, str]:
    r = requests.get(f"{upstream.url}/auth/token", auth=(user, PASSWORDS[user]),
                     params={"service": "test-registry", "scope": scope}, timeout=30)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def pull(mirror: RegistryProcess, path: str) -> requests.Response:
    return requests.get(f"{mirror.url}/v2/{path}", headers=ACCEPT, timeout=120)


def test_token_dance_with_credentials_and_cached_tokens(mirror, token_upstream):
    name = f"team-a/app{uuid.uuid4().hex[:8]}"
    manifest, digest = push(token_upstream.url, name, "v1",
                            token_for(token_upstream, f"repository:{name}:pull,push"))
    log = AccessLog(token_upstream)
    tokens_before = log.count("GET", "/auth/token")
    r = pull(mirror, f"tok/{name}/manifests/v1")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    for blob in (manifest["config"], *manifest["layers"]):
        r = pull(mirror, f"tok/{name}/blobs/{blob['digest']}")
        assert r.status_code == 200 and sha256(r.content) == blob["digest"]
    # One 401, then one token for the scope per worker process (the mirror runs two),
    # reused for the manifest and both blobs.
    assert 1 <= log.count("GET", "/auth/token") - tokens_before <= 2
    assert log.count("GET", f"/v2/{name}/manifests/v1") == 2  # the 401, then the retry
    # Without credentials the upstream refuses: a clear error, no upstream secrets.
    r = pull(mirror, f"tokanon/{name}/manifests/v1")
    assert_error(r, 404, "NAME_UNKNOWN")
    assert "WWW-Authenticate" not in r.headers
    assert "test-registry" not in r.text and "realm" not in r.text


def test_anonymous_token_for_a_public_repository(mirror, token_upstream):
    name = f"public/app{uuid.uuid4().hex[:8]}"
    _, digest = push(token_upstream.url, name, "v1",
                     token_for(token_upstream, f"repository:{name}:pull,push", "carol"))
    r = pull(mirror, f"tokanon/{name}/manifests/v1")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == digest


def test_credentials_never_reach_clients(mirror, token_upstream):
    name = f"team-a/secret{uuid.uuid4().hex[:8]}"
    push(token_upstream.url, name, "v1",
         token_for(token_upstream, f"repository:{name}:pull,push"))
    r = pull(mirror, f"tok/{name}/manifests/v1")
    assert r.status_code == 200
    exposed = json.dumps(dict(r.headers)) + r.text
    assert PASSWORDS["alice"] not in exposed and "Bearer" not in exposed
    assert PASSWORDS["alice"] not in mirror.log_path.read_text()


def test_distribution_with_htpasswd(mirror, distribution):
    name = f"library/dist{uuid.uuid4().hex[:8]}"
    manifest, digest = push(distribution.url, name, "v1",
                            auth=("alice", PASSWORDS["alice"]))
    r = pull(mirror, f"dist/{name}/manifests/v1")
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == digest == sha256(r.content)
    layer = manifest["layers"][0]
    r = pull(mirror, f"dist/{name}/blobs/{layer['digest']}")
    assert r.status_code == 200 and sha256(r.content) == layer["digest"]
    assert_error(pull(mirror, f"distanon/{name}/manifests/v1"), 404, "NAME_UNKNOWN")


def test_tls_upstream_with_a_private_ca_and_mtls(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    upstream = SecureRegistry(tmp_path / "up" / "data",
                              {"auth": auth_config(tmp_path / "up" / "data", "token")},
                              pki=pki, workers=1, mtls=True).start()
    try:
        session = upstream.session()
        name = f"team-a/tls{uuid.uuid4().hex[:8]}"
        r = session.get(f"{upstream.url}/auth/token", auth=("alice", PASSWORDS["alice"]),
                        params={"service": "test-registry",
                                "scope": f"repository:{name}:pull,push"})
        manifest, digest = push(upstream.url, name, "v1",
                                {"Authorization": f"Bearer {r.json()['token']}"},
                                session=session)
        credentials = {"username": "alice", "password": PASSWORDS["alice"]}
        mirror = start_mirror(tmp_path / "mirror", [
            {"name": "tls", "url": upstream.url, "ca_file": str(pki.ca_cert),
             "client_cert": str(pki.client_cert), "client_key": str(pki.client_key),
             **credentials},
            {"name": "noca", "url": upstream.url, **credentials},
            {"name": "nocert", "url": upstream.url, "ca_file": str(pki.ca_cert),
             **credentials},
        ], workers=1)
        try:
            r = pull(mirror, f"tls/{name}/manifests/v1")
            assert r.status_code == 200, r.text
            assert r.headers["Docker-Content-Digest"] == digest
            layer = manifest["layers"][0]["digest"]
            r = pull(mirror, f"tls/{name}/blobs/{layer}")
            assert r.status_code == 200 and sha256(r.content) == layer
            for other in ("noca", "nocert"):  # an unknown CA, no client certificate
                r = pull(mirror, f"{other}/{name}/manifests/v1")
                assert_error(r, 503, "UNAVAILABLE")
        finally:
            mirror.stop()
    finally:
        upstream.stop()
