"""The mirror's configuration and routing rules (no server needed)."""

from __future__ import annotations

import pytest

from ociregistry.config import ConfigError, load_settings
from ociregistry.core.errors import NameInvalid, NameUnknown
from ociregistry.mirror.auth import parse_challenge
from ociregistry.mirror.routing import resolve
from ociregistry.mirror.settings import MirrorSettings
from ociregistry.mirror.upstream import UpstreamClient, retry_after_seconds

HUB = {"name": "dockerhub", "url": "https://registry-1.docker.io", "hosts": ["docker.io"],
       "default": True}
GHCR = {"name": "ghcr", "url": "https://ghcr.io/", "hosts": ["ghcr.io"]}


def mirror(*upstreams: dict) -> MirrorSettings:
    return load_settings(environ={}, overrides={"mirror": {"upstreams": list(upstreams)}}).mirror


def test_settings_parse_durations_sizes_and_mappings():
    settings = load_settings(environ={}, overrides={"mirror": {"upstreams": {
        "dockerhub": {"url": "https://registry-1.docker.io/", "tag_ttl": "5m",
                      "max_stale": "7d", "negative_ttl": "30s", "size_budget": "10GiB",
                      "prefetch": [{"repository": "library/alpine", "tags": "3.*"}],
                      "prefetch_schedule": "0 */6 * * *"}}}})
    hub = settings.mirror.upstreams[0]
    assert (hub.name, hub.url, hub.tag_ttl, hub.max_stale, hub.negative_ttl) == (
        "dockerhub", "https://registry-1.docker.io", 300, 7 * 86400, 30)
    assert hub.size_budget == 10 << 30 and hub.is_docker_hub and not hub.allow_push


@pytest.mark.parametrize("bad", [
    {"name": "Bad", "url": "https://x.io"},
    {"name": "a/b", "url": "https://x.io"},
    {"name": "x", "url": "file:///etc/passwd"},
    {"name": "x", "url": "ftp://x.io"},
    {"name": "x", "url": "https://user:pw@x.io"},
    {"name": "x", "url": "https://x.io/some/path"},
    {"name": "x", "url": "https://x.io", "hosts": ["not a host"]},
    {"name": "x", "url": "https://x.io", "tag_ttl": "soon"},
    {"name": "x", "url": "https://x.io", "client_cert": "/c.pem"},
    {"name": "x", "url": "https://x.io", "prefetch_schedule": "every day"},
])
def test_bad_upstreams_are_refused(bad):
    with pytest.raises(ConfigError):
        mirror(bad)


def test_names_hosts_and_defaults_are_unique():
    with pytest.raises(ConfigError, match="unique"):
        mirror(HUB, {**GHCR, "name": "dockerhub", "default": False})
    with pytest.raises(ConfigError, match="default"):
        mirror(HUB, {**GHCR, "default": True})
    with pytest.raises(ConfigError, match="one upstream"):
        mirror(HUB, {**GHCR, "hosts": ["docker.io"]})


def test_prefix_routes_with_docker_hubs_library():
    settings = mirror(HUB, GHCR)
    route = resolve(settings, "dockerhub/alpine", None)
    assert (route.local_name, route.remote_name) == ("dockerhub/library/alpine",
                                                     "library/alpine")
    route = resolve(settings, "ghcr/owner/tool", None)
    assert (route.local_name, route.remote_name) == ("ghcr/owner/tool", "owner/tool")
    route = resolve(settings, "ghcr/tool", None)  # not Docker Hub: no library/
    assert route.remote_name == "tool"
    with pytest.raises(NameUnknown):
        resolve(settings, "ghcr", None)


def test_ns_routes_and_unknown_hosts_are_errors():
    settings = mirror(HUB, GHCR)
    route = resolve(settings, "alpine", "docker.io")
    assert (route.local_name, route.namespace) == ("dockerhub/library/alpine", "docker.io")
    assert resolve(settings, "owner/tool", "GHCR.IO").local_name == "ghcr/owner/tool"
    # A client that already names the prefix.
    assert resolve(settings, "dockerhub/library/x", "docker.io").remote_name == "library/x"
    with pytest.raises(NameUnknown):
        resolve(settings, "alpine", "quay.io")
    for hostile in ("", "a b", "http://x", "x/y", "-x", "x" * 300, "x:99999999"):
        with pytest.raises((NameInvalid, NameUnknown)):
            resolve(settings, "alpine", hostile)
    with pytest.raises(NameUnknown):  # no upstream at all: still no outbound request
        resolve(mirror(), "alpine", "docker.io")


def test_the_default_upstream_takes_reads_of_unknown_bare_names_only():
    settings = mirror(HUB, GHCR)
    local = {"team/app"}
    route = resolve(settings, "library/alpine", None, "GET", local.__contains__)
    assert route.local_name == "dockerhub/library/alpine"
    assert resolve(settings, "team/app", None, "GET", local.__contains__) is None
    assert resolve(settings, "team/new", None, "PUT", local.__contains__) is None
    assert resolve(mirror(GHCR), "library/alpine", None, "GET", local.__contains__) is None
    assert resolve(mirror(), "anything", None) is None


def test_challenges_retry_after_and_redirect_hosts():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"')
    assert scheme == "bearer" and params == {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
    assert retry_after_seconds("120") == 120 and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    hub = UpstreamClient(mirror(HUB).upstreams[0])
    assert hub.host_allowed("registry-1.docker.io") and hub.host_allowed("auth.docker.io")
    assert not hub.host_allowed("evil.example") and not hub.host_allowed("169.254.169.254")
    local = UpstreamClient(mirror({"name": "l", "url": "http://127.0.0.1:5000",
                                   "redirect_hosts": ["cdn.example"]}).upstreams[0])
    assert local.host_allowed("127.0.0.1:5000") and local.host_allowed("cdn.example:8443")
    assert not local.host_allowed("127.0.0.1:6000") and not local.host_allowed("localhost:5000")
    quay = UpstreamClient(mirror({"name": "q", "url": "https://quay.io",
                                  "redirect_hosts": ["*.quay.io"]}).upstreams[0])
    assert quay.host_allowed("cdn01.quay.io") and quay.host_allowed("a.b.quay.io")
    assert not quay.host_allowed("evilquay.io") and not quay.host_allowed("quay.io.evil.com")
    with pytest.raises(ConfigError):
        mirror({"name": "w", "url": "https://x.io", "hosts": ["*.x.io"]})
