"""Property-based: what a caller controls can't buy it trust.

- Hops a client writes to the left of X-Forwarded-For never change the address
  the registry settles on, and a request with any forwarding header is never
  "local".
- A robot password is either the exact token or refused, whatever its bytes.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociregistry.auth.robots import RobotRefused, RobotService, parse_scope
from ociregistry.config import RobotSettings, Settings
from ociregistry.runtime import build_runtime
from ociregistry.web.proxies import (
    PEER,
    ClientAddress,
    client_address,
    is_local,
    parse_address,
)

SETTINGS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8")]

TRUSTED_HOPS = st.builds(lambda a, b: f"10.{a}.{b}.1", st.integers(0, 255), st.integers(0, 255))
UNTRUSTED_HOPS = st.builds(lambda a, b: f"198.51.{a}.{b}", st.integers(0, 255),
                           st.integers(0, 255))
ANY_HOP = st.one_of(
    TRUSTED_HOPS, UNTRUSTED_HOPS,
    st.sampled_from(["127.0.0.1", "::1", "[::1]:80", "::ffff:127.0.0.1", "unknown", "",
                     "1.2.3.4:5", "_hidden", "2001:db8::1"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126,
                                   exclude_characters=","), max_size=20),
)


@given(spoofed=st.lists(ANY_HOP, max_size=6), real=UNTRUSTED_HOPS,
       proxies=st.lists(TRUSTED_HOPS, max_size=3), peer=TRUSTED_HOPS)
@SETTINGS
def test_hops_a_client_prepends_never_change_its_address(spoofed, real, proxies, peer):
    """Whatever a client writes before the header reaches the first trusted proxy, the
    address is the hop that proxy appended: the client's real one."""
    header = ", ".join([*spoofed, real, *proxies])
    assert client_address(header, peer, TRUSTED) == real


@given(header=st.lists(ANY_HOP, max_size=8).map(", ".join), peer=ANY_HOP)
@SETTINGS
def test_the_client_address_is_the_peer_or_a_hop_and_never_raises(header, peer):
    got = client_address(header, peer, TRUSTED)
    candidates = {str(a) for a in map(parse_address, [peer, *header.split(",")]) if a}
    assert got == peer or got in candidates


FORWARDING = st.sampled_from([
    "HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PROTO", "HTTP_X_CLIENT_IP", "HTTP_TRUE_CLIENT_IP",
    "HTTP_CF_CONNECTING_IP", "HTTP_X_ORIGINAL_FORWARDED_FOR",
])


@given(headers=st.dictionaries(FORWARDING, ANY_HOP, min_size=1, max_size=3),
       trusted=st.booleans())
@SETTINGS
def test_a_request_with_any_forwarding_header_is_never_local(headers, trusted):
    seen = {}

    def app(environ, start_response):  # noqa: ANN001, ANN202
        seen.update(environ)
        return []

    middleware = ClientAddress(app, ["127.0.0.0/8"] if trusted else [])
    middleware({"REMOTE_ADDR": "127.0.0.1", **headers}, lambda *a: None)
    assert seen[PEER] == "127.0.0.1"
    assert not is_local(seen)


# -- robot tokens ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def robots(tmp_path_factory: pytest.TempPathFactory) -> tuple[RobotService, str]:
    data: Path = tmp_path_factory.mktemp("robots")
    runtime = build_runtime(Settings(data_dir=str(data)), migrate=True)
    service = RobotService(runtime.metadata, RobotSettings())
    _, token = service.create("ci", parse_scope(["ci/**:pull"]))
    return service, token


@given(data=st.data())
@SETTINGS
def test_a_robot_password_is_the_exact_token_or_refused(robots, data):
    service, token = robots
    prefix, token_id, secret = token.split("_", 2)
    password = data.draw(st.one_of(
        st.text(max_size=80),
        st.builds(lambda s: f"{prefix}_{token_id}_{s}", st.text(max_size=60)),
        st.builds(lambda i: f"{prefix}_{i}_{secret}", st.text(max_size=20)),
        st.builds(lambda n: token[:n] + token[n + 1:], st.integers(0, len(token) - 1)),
    ))
    user = data.draw(st.sampled_from(["robot$ci", "robot$other", "ci", "robot$ci\x00"]))
    try:
        grant = service.authenticate(user, password)
    except RobotRefused:
        assert (user, password) != ("robot$ci", token)
        return
    assert (user, password) == ("robot$ci", token) and grant.user == "robot$ci"
