"""Who is at the other end of the socket, and which client is behind the proxies.

A WSGI middleware (outermost, before anything reads a forwarding header) keeps
the socket peer and whether the request came through a proxy in the environ.
Then, for a peer in ``http.trusted_proxies`` only, it sets REMOTE_ADDR to the
client: the right-most X-Forwarded-For hop that is not a trusted proxy (every
hop left of it was written by someone we don't trust). X-Forwarded-Proto/Host/
Port are applied by werkzeug's ProxyFix for those peers too.

"The registry host" (``is_local``) is decided from the kept peer alone: a
loopback peer, and no forwarding header at all. A proxy on the same host
connects from loopback for every client, and a header is what anyone can send,
so neither may ever make a caller local. Nothing here reads Flask globals.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

PEER = "ociregistry.peer"  # REMOTE_ADDR as the server gave it: the socket peer

# Headers by which a proxy (or someone pretending to be one) names a client.
_FORWARDING = ("HTTP_FORWARDED", "HTTP_X_REAL_IP", "HTTP_X_CLIENT_IP", "HTTP_TRUE_CLIENT_IP",
               "HTTP_CF_CONNECTING_IP", "HTTP_X_ORIGINAL_FORWARDED_FOR")


def parse_address(value: str) -> Address | None:
    """An address from a hop: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address | None, networks: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(forwarded_for: str, peer: str, networks: list[Network]) -> str:
    """The right-most hop of ``forwarded_for`` (then ``peer``) that is not a trusted proxy.

    When every hop is trusted, the left-most one. A hop that is not an
    address ends the walk: what is left of it can't be believed, so the last
    trusted hop stands for the client.
    """
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    client = parse_address(peer)
    if client is None:
        return peer
    for hop in reversed(hops):
        if not _trusted(client, networks):
            break
        address = parse_address(hop)
        if address is None:
            break
        client = address
    return str(client)


_FORWARDING_PREFIXES = ("HTTP_X_FORWARDED_", *_FORWARDING)


def is_proxied(environ: dict[str, Any]) -> bool:
    """A forwarding header is present (trusted or not). Proxy processing leaves these
    headers in the environ, so this can be asked at any time of the request."""
    return any(key.startswith(_FORWARDING_PREFIXES) for key in environ)


def is_local(environ: dict[str, Any]) -> bool:
    """A request from this host, straight to the registry (no proxy in between).

    Fails closed: without the middleware's record the answer is no.
    """
    if PEER not in environ or is_proxied(environ):
        return False
    peer = parse_address(environ[PEER])
    return peer is not None and peer.is_loopback


class ClientAddress:
    """Keep the socket peer; believe forwarding headers only from trusted proxies."""

    def __init__(self, app: Any, trusted_proxies: list[str]) -> None:
        self.app = app
        self.networks: list[Network] = [ipaddress.ip_network(n, strict=False)
                                        for n in trusted_proxies]
        # REMOTE_ADDR is set here (x_for=0): ProxyFix would take one hop only.
        self.fixed = ProxyFix(app, x_for=0, x_proto=1, x_host=1, x_port=1)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        peer = environ.get("REMOTE_ADDR") or ""
        environ[PEER] = peer  # is_local asks about forwarding headers only when needed
        if self.networks and _trusted(parse_address(peer), self.networks):
            environ["REMOTE_ADDR"] = client_address(
                environ.get("HTTP_X_FORWARDED_FOR", ""), peer, self.networks)
            return self.fixed(environ, start_response)
        return self.app(environ, start_response)
