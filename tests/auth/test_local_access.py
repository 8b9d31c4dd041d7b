""""The registry host" is the socket peer, never something a header says.

Without authentication, POST /v2/gc and the UI's garbage collection are allowed
only to a caller on the registry host. That is decided from the socket peer,
before any proxy processing, and never for a request that came through a proxy
(one carrying Forwarded, X-Forwarded-* or X-Real-IP), trusted or not. The
client address that logs and rate limits use is the right-most hop of
X-Forwarded-For that is not a trusted proxy.

In process (the Flask test client sets the peer address), then through the real
nginx of deploy/nginx in front of a real registry, and directly to it.
"""

from __future__ import annotations

import http.client
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
import yaml

from tests.cluster.nginx import DeployNginx
from tests.server import RegistryProcess

SPOOFS = [
    {"X-Forwarded-For": "127.0.0.1"},
    {"X-Forwarded-For": "::1"},
    {"Forwarded": "for=127.0.0.1"},
    {"X-Real-IP": "127.0.0.1"},
    {"X-Forwarded-Host": "localhost"},
]


def _ids(headers: dict[str, str]) -> str:
    return ",".join(headers)


# -- in process: the peer address is whatever the test says ----------------------------
@pytest.mark.parametrize("headers", SPOOFS, ids=_ids)
def test_proxy_headers_never_make_a_loopback_peer_local(make_registry, headers):
    c = make_registry(None)
    r = c.post("/v2/gc?dry_run=true", headers=headers)
    assert r.status_code == 403, r.get_data(as_text=True)
    assert r.get_json()["errors"][0]["code"] == "DENIED"
    assert c.get("/ui/gc/status", headers=headers).status_code == 403
    assert c.get("/ui/gc", headers=headers).status_code == 403
    # The same caller without the header is the local admin.
    assert c.post("/v2/gc?dry_run=true").status_code == 200
    assert c.get("/ui/gc/status").status_code == 200


@pytest.mark.parametrize("headers", SPOOFS, ids=_ids)
def test_a_pod_of_a_trusted_network_cannot_claim_to_be_loopback(make_registry, headers):
    """The shipped Kubernetes config trusts 10.0.0.0/8: every pod is in it."""
    c = make_registry(None, http={"trusted_proxies": ["10.0.0.0/8"]})
    pod = {"REMOTE_ADDR": "10.1.2.3"}
    r = c.post("/v2/gc?dry_run=true", headers=headers, environ_base=pod)
    assert r.status_code == 403, r.get_data(as_text=True)
    assert c.get("/ui/gc/status", headers=headers, environ_base=pod).status_code == 403


def test_a_trusted_loopback_proxy_does_not_make_its_clients_local(make_registry):
    """A proxy on the registry host connects from loopback for every client."""
    c = make_registry(None, http={"trusted_proxies": ["127.0.0.1", "::1"]})
    for forwarded_for in ("198.51.100.7", "127.0.0.1", "::1", "127.0.0.1, 127.0.0.1"):
        r = c.post("/v2/gc?dry_run=true", headers={"X-Forwarded-For": forwarded_for})
        assert r.status_code == 403, forwarded_for
    assert c.post("/v2/gc?dry_run=true").status_code == 200


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_every_loopback_peer_is_the_registry_host(make_registry, peer):
    c = make_registry(None)
    r = c.post("/v2/gc?dry_run=true", environ_base={"REMOTE_ADDR": peer})
    assert r.status_code == 200, r.get_data(as_text=True)


@pytest.mark.parametrize("peer", ["192.0.2.1", "10.0.0.1", "::ffff:10.0.0.1", "", "garbage"])
def test_other_peers_are_not(make_registry, peer):
    c = make_registry(None)
    r = c.post("/v2/gc?dry_run=true", environ_base={"REMOTE_ADDR": peer})
    assert r.status_code == 403, r.get_data(as_text=True)


TRUSTED = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]


@pytest.mark.parametrize(("forwarded_for", "peer", "client"), [
    # one trusted proxy
    ("203.0.113.5", "10.0.0.5", "203.0.113.5"),
    # a balancer behind the ingress: both trusted, the client is left of them
    ("203.0.113.5, 10.0.0.9", "10.0.0.5", "203.0.113.5"),
    # whatever the client wrote itself stays left of its own address
    ("127.0.0.1, 198.51.100.1, 203.0.113.5, 10.0.0.9", "10.0.0.5", "203.0.113.5"),
    ("10.0.0.1, 203.0.113.5", "127.0.0.1", "203.0.113.5"),
    # IPv6, spacing, repeated headers joined by the server
    ("2001:db9::7,  2001:db9::1", "127.0.0.1", "2001:db9::1"),
    ("2001:db8::7, 2001:db8::1", "2001:db8::2", "2001:db8::7"),
    ("203.0.113.5,10.0.0.9", "10.0.0.5", "203.0.113.5"),
    # ports and brackets some proxies add
    ("203.0.113.5:4711", "10.0.0.5", "203.0.113.5"),
    ("[2001:db9::5]:4711", "10.0.0.5", "2001:db9::5"),
    # every hop trusted: the left-most one is the closest thing to a client
    ("10.0.0.1, 10.0.0.2", "127.0.0.1", "10.0.0.1"),
    # no header: the proxy itself
    ("", "10.0.0.5", "10.0.0.5"),
    # garbage: nothing left of it can be believed; the last trusted hop is the client
    ("203.0.113.5, not-an-address, 10.0.0.9", "10.0.0.5", "10.0.0.9"),
    ("unknown", "10.0.0.5", "10.0.0.5"),
])
def test_client_address_is_the_rightmost_untrusted_hop(forwarded_for, peer, client):
    import ipaddress

    from ociregistry.web.proxies import client_address

    networks = [ipaddress.ip_network(n) for n in TRUSTED]
    assert client_address(forwarded_for, peer, networks) == client


def test_rate_limits_count_the_rightmost_untrusted_hop(make_registry):
    c = make_registry(None, http={"trusted_proxies": ["10.0.0.0/8"]},
                      rate_limit={"per_address": 0.001, "burst": 1})
    ingress = {"REMOTE_ADDR": "10.0.0.5"}
    # Client 203.0.113.5 behind a balancer (10.0.0.9) behind the ingress (10.0.0.5).
    r = c.get("/v2/", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.5, 10.0.0.9"},
              environ_base=ingress)
    assert r.status_code == 200
    # A new left-most value does not make it a new client ...
    r = c.get("/v2/", headers={"X-Forwarded-For": "198.51.100.2, 203.0.113.5, 10.0.0.9"},
              environ_base=ingress)
    assert r.status_code == 429
    # ... and another client behind the same balancer has a bucket of its own.
    r = c.get("/v2/", headers={"X-Forwarded-For": "203.0.113.6, 10.0.0.9"},
              environ_base=ingress)
    assert r.status_code == 200


# -- a real registry behind the real nginx of deploy/nginx ------------------------------
@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory) -> Iterator[tuple[RegistryProcess, DeployNginx]]:
    """A registry (no authentication) that trusts the nginx on its host."""
    base = tmp_path_factory.mktemp("behind-nginx")
    config = base / "config.yml"
    config.write_text(yaml.safe_dump({"http": {"trusted_proxies": ["127.0.0.1"]}}))
    registry = RegistryProcess(base / "data", config=config).start()
    try:
        nginx = DeployNginx([registry.host]).start()
        try:
            yield registry, nginx
        finally:
            nginx.stop()
    finally:
        registry.stop()


def _post_gc(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{url}/v2/gc", params={"dry_run": "true"}, headers=headers,
                         timeout=120)


def test_gc_through_the_shipped_nginx_is_refused(behind_nginx):
    registry, nginx = behind_nginx
    for headers in [{}, *SPOOFS]:
        r = _post_gc(nginx.url, headers)
        assert r.status_code == 403, (headers, r.text)
        assert r.json()["errors"][0]["code"] == "DENIED"
        r = requests.get(f"{nginx.url}/ui/gc/status", headers=headers, timeout=60)
        assert r.status_code == 403, headers


def test_gc_directly_on_the_registry_host(behind_nginx):
    registry, _ = behind_nginx
    r = _post_gc(registry.url)
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True
    assert requests.get(f"{registry.url}/ui/gc/status", timeout=60).status_code == 200
    for headers in SPOOFS:  # a header alone says "through a proxy": refused
        assert _post_gc(registry.url, headers).status_code == 403, headers


def _access_line(registry: RegistryProcess, request_id: str) -> str:
    """The registry's access-log line of that request (written once the body is sent)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in registry.log_path.read_text(errors="replace").splitlines():
            if line.endswith(" " + request_id):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {request_id}")


def test_logs_name_the_client_nginx_saw_not_the_one_it_claims(behind_nginx):
    registry, nginx = behind_nginx
    request_id = uuid.uuid4().hex
    # From 127.0.0.2 (still this host, but not the trusted proxy's 127.0.0.1).
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=60,
                                      source_address=("127.0.0.2", 0))
    try:
        conn.request("GET", "/v2/", headers={
            "X-Forwarded-For": "198.51.100.1, 127.0.0.1", "X-Request-ID": request_id})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()
    line = _access_line(registry, request_id)
    client = line.split(" INFO ociregistry.access ", 1)[1].split()[0]
    assert client == "127.0.0.2", line


def test_gc_through_nginx_with_authentication_is_for_admins(tmp_path):
    """With authentication the proxy changes nothing: an admin may, others may not."""
    from tests.auth.support import SecureRegistry, auth_config, basic

    data = tmp_path / "data"
    config = {"http": {"trusted_proxies": ["127.0.0.1"]}, "auth": auth_config(data, "basic")}
    registry = SecureRegistry(data, config).start()
    try:
        nginx = DeployNginx([registry.host]).start()
        try:
            assert _post_gc(nginx.url, basic("root")).status_code == 200
            assert _post_gc(nginx.url, basic("alice")).status_code == 403
            r = _post_gc(nginx.url, {"X-Forwarded-For": "127.0.0.1"})
            assert r.status_code == 401
        finally:
            nginx.stop()
    finally:
        registry.stop()
