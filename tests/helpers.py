"""Small HTTP helpers for API tests."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def send_and_hang_up(host: str, port: int, data: bytes, timeout: float = 30) -> None:
    """Send raw bytes (a request cut short), close our side, and read whatever
    the server answers until it closes: a client that went away mid-body."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


class RawResponse:
    """One response read off a raw connection."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


class _Unclosable:
    """The connection's one buffered reader, lent to http.client for each response
    (it would close it after a body; the next response is still in it)."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def makefile(self, *args: Any, **kwargs: Any) -> _Unclosable:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    def close(self) -> None:
        pass


def raw_exchange(
    host: str, port: int, data: bytes, methods: list[str], timeout: float = 30
) -> list[RawResponse]:
    """Send ``data`` (one or more requests, byte for byte) in one sendall and read one
    response per entry of ``methods`` (their request methods, in order), on one connection."""
    import http.client

    responses = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        reader = _Unclosable(sock.makefile("rb"))
        for method in methods:
            response = http.client.HTTPResponse(reader, method=method)  # type: ignore[arg-type]
            response.begin()
            body = response.read()
            responses.append(RawResponse(response.status, dict(response.getheaders()), body))
    return responses


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(url: str, repo: str, data: bytes) -> str:
    digest = sha256(data)
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    return digest


def make_image(url: str, repo: str, layers: int = 2, extra: dict | None = None) -> dict[str, Any]:
    """Push a config and random layers; return the (unpushed) manifest dict."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    config_bytes = config.encode()
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": push_blob(url, repo, config_bytes),
            "size": len(config_bytes),
        },
        "layers": [],
    }
    for _ in range(layers):
        data = os.urandom(1024)
        manifest["layers"].append(
            {"mediaType": OCI_LAYER, "digest": push_blob(url, repo, data), "size": len(data)}
        )
    manifest.update(extra or {})
    return manifest


def put_manifest(
    url: str, repo: str, ref: str, manifest: dict | bytes, media_type: str = OCI_MANIFEST,
    **kwargs: Any,
) -> requests.Response:
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return requests.put(
        f"{url}/v2/{repo}/manifests/{ref}",
        data=body,
        headers={"Content-Type": media_type},
        **kwargs,
    )


def assert_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    if response.request.method != "HEAD":
        codes = [e["code"] for e in response.json()["errors"]]
        assert code in codes, response.text


# -- added for the API suite (tests/api) ---------------------------------------
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def absolute(url: str, location: str) -> str:
    """A Location header may be relative to the registry: make it absolute."""
    from urllib.parse import urljoin

    return urljoin(url + "/", location)


def start_upload(url: str, repo: str, **params: str) -> str:
    """POST an upload session; return its absolute Location."""
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params=params)
    assert r.status_code == 202, (r.status_code, r.text)
    return absolute(url, r.headers["Location"])


def error_codes(response: requests.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]


def next_link(url: str, response: requests.Response) -> str | None:
    """The absolute URL of a Link: <...>; rel="next" header, if any."""
    link = response.headers.get("Link")
    if not link:
        return None
    target, _, rest = link.partition(";")
    assert 'rel="next"' in rest, link
    return absolute(url, target.strip().strip("<>"))


def push_empty_config(url: str, repo: str) -> dict[str, Any]:
    """Push the OCI empty blob ``{}`` and return its descriptor."""
    return {"mediaType": OCI_EMPTY, "digest": push_blob(url, repo, b"{}"), "size": 2}


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# A tiny ECDSA P-256 (ES256) signer, enough to build a real libtrust-style
# signed schema 1 manifest without extra packages.
_P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_A = -3
_P256_G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)


def _ec_add(p: tuple[int, int] | None, q: tuple[int, int] | None) -> tuple[int, int] | None:
    if p is None:
        return q
    if q is None:
        return p
    if p[0] == q[0] and (p[1] + q[1]) % _P256_P == 0:
        return None
    if p == q:
        lam = (3 * p[0] * p[0] + _P256_A) * pow(2 * p[1], -1, _P256_P)
    else:
        lam = (q[1] - p[1]) * pow(q[0] - p[0], -1, _P256_P)
    lam %= _P256_P
    x = (lam * lam - p[0] - q[0]) % _P256_P
    return x, (lam * (p[0] - x) - p[1]) % _P256_P


def _ec_mul(k: int, point: tuple[int, int]) -> tuple[int, int]:
    result = None
    addend: tuple[int, int] | None = point
    while k:
        if k & 1:
            result = _ec_add(result, addend)
        addend = _ec_add(addend, addend)
        k >>= 1
    assert result is not None
    return result


def _es256_sign(secret: int, message: bytes) -> bytes:
    z = int.from_bytes(hashlib.sha256(message).digest(), "big")
    while True:
        k = int.from_bytes(os.urandom(32), "big") % _P256_N
        if not k:
            continue
        r = _ec_mul(k, _P256_G)[0] % _P256_N
        s = pow(k, -1, _P256_N) * (z + r * secret) % _P256_N
        if r and s:
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def es256_verify(public: tuple[int, int], message: bytes, signature: bytes) -> bool:
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    z = int.from_bytes(hashlib.sha256(message).digest(), "big")
    w = pow(s, -1, _P256_N)
    point = _ec_add(_ec_mul(z * w % _P256_N, _P256_G), _ec_mul(r * w % _P256_N, public))
    return point is not None and point[0] % _P256_N == r


def sign_schema1(manifest: dict[str, Any]) -> tuple[bytes, bytes]:
    """Sign a schema 1 manifest as docker/libtrust did.

    Returns (signed bytes as pushed, canonical bytes the digest is computed over).
    """
    import time as _time

    payload = json.dumps(manifest, indent=3).encode()
    # The signed prefix stops before the closing brace; the tail closes it again.
    format_length = payload.rindex(b"\n}")
    tail = payload[format_length:]
    secret = int.from_bytes(os.urandom(32), "big") % (_P256_N - 1) + 1
    public = _ec_mul(secret, _P256_G)
    protected = json.dumps({
        "formatLength": format_length,
        "formatTail": b64url(tail),
        "time": _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime()),
    }).encode()
    signing_input = f"{b64url(protected)}.{b64url(payload)}".encode()
    signature = {
        "header": {
            "jwk": {
                "crv": "P-256",
                "kid": "TEST:" + hashlib.sha256(signing_input).hexdigest()[:40].upper(),
                "kty": "EC",
                "x": b64url(public[0].to_bytes(32, "big")),
                "y": b64url(public[1].to_bytes(32, "big")),
            },
            "alg": "ES256",
        },
        "signature": b64url(_es256_sign(secret, signing_input)),
        "protected": b64url(protected),
    }
    signatures = json.dumps([signature], indent=3).replace("\n", "\n   ").encode()
    signed = payload[:format_length] + b',\n   "signatures": ' + signatures + tail
    return signed, payload


def patch_chunk(location: str, data: bytes, start: int | None = None) -> requests.Response:
    """PATCH one chunk, with Content-Range when ``start`` is given."""
    headers = {"Content-Type": "application/octet-stream"}
    if start is not None:
        headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
    return requests.patch(location, data=data, headers=headers)


def get_blob(registry: Any, repo: str, digest: str) -> requests.Response:
    return requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}")
