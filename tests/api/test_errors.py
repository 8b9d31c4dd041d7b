"""Every failure answers the OCI error envelope; names are validated strictly."""

from __future__ import annotations

import http.client
import json
import re
import uuid

import pytest
import requests

from tests.helpers import push_blob, sha256

CODE_RE = re.compile(r"^[A-Z]+(?:_[A-Z]+)*$")


def _raw(registry, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send the path exactly as written (no client-side normalisation of ``..``)."""
    host, port = registry.host.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def assert_envelope(status: int, headers: dict[str, str], body: bytes, expected_status: int,
                    code: str | None = None, method: str = "GET") -> None:
    assert status == expected_status, (status, body[:300])
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    if method == "HEAD":
        assert body == b""
        return
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert isinstance(doc["errors"], list) and doc["errors"], doc
    for error in doc["errors"]:
        assert CODE_RE.match(error["code"]), error
        assert isinstance(error.get("message", ""), str)
    if code is not None:
        assert code in [e["code"] for e in doc["errors"]], doc


BAD_NAMES = [
    pytest.param("../etc", id="dotdot-first"),
    pytest.param("a/../b", id="dotdot-middle"),
    pytest.param("a/./b", id="dot-component"),
    pytest.param("%2e%2e/etc", id="encoded-dotdot"),
    pytest.param("a/..%2f..%2fetc", id="encoded-slash"),
    pytest.param("Upper/case", id="uppercase"),
    pytest.param("a//b", id="double-slash"),
    pytest.param("a/", id="trailing-slash"),
    pytest.param("-leading", id="leading-dash"),
    pytest.param("trailing-", id="trailing-dash"),
    pytest.param("a___b", id="three-underscores"),
    pytest.param("a..b", id="double-dot"),
    # nginx answers a %00 in the path itself (400, HTML): the registry never sees it.
    pytest.param("a%00b", id="nul-byte", marks=pytest.mark.single_node),
    pytest.param("a%20b", id="space"),
    pytest.param("x" * 256, id="256-chars"),
    pytest.param("/".join(["abcdefghij"] * 24), id="264-chars-nested"),
]

ENDPOINTS = [
    ("GET", "/v2/{name}/tags/list"),
    ("GET", "/v2/{name}/manifests/latest"),
    ("HEAD", "/v2/{name}/manifests/latest"),
    ("PUT", "/v2/{name}/manifests/latest"),
    ("DELETE", "/v2/{name}/manifests/latest"),
    ("GET", "/v2/{name}/blobs/" + sha256(b"x")),
    ("DELETE", "/v2/{name}/blobs/" + sha256(b"x")),
    ("POST", "/v2/{name}/blobs/uploads/"),
    ("GET", "/v2/{name}/referrers/" + sha256(b"x")),
]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("method,template", ENDPOINTS, ids=[f"{m}-{t.split('/')[3]}"
                                                            for m, t in ENDPOINTS])
def test_invalid_names_are_name_invalid(registry, name, method, template):
    body = b"{}" if method == "PUT" else None
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"} if body else {}
    status, hdrs, data = _raw(registry, method, template.format(name=name), body, headers)
    assert_envelope(status, hdrs, data, 400, "NAME_INVALID", method)


# Behind nginx, a path climbing above the root is refused by nginx (400, HTML).
@pytest.mark.single_node
def test_path_traversal_never_reaches_the_filesystem(registry, tmp_path):
    # A blob pushed with a traversal name must not be written anywhere.
    status, hdrs, data = _raw(
        registry, "POST", f"/v2/../../../../{tmp_path.name}/blobs/uploads/?digest={sha256(b'x')}",
        b"x", {"Content-Type": "application/octet-stream"},
    )
    assert_envelope(status, hdrs, data, 400, "NAME_INVALID")
    assert list(tmp_path.iterdir()) == []


def test_valid_unusual_names_are_accepted(registry):
    suffix = uuid.uuid4().hex[:8]
    for name in (f"a__b-{suffix}", f"a---b.c_d/e-{suffix}", f"x{suffix}/" + "y" * 150,
                 f"0/1/2/3/4/{suffix}"):
        r = requests.post(f"{registry.url}/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, (name, r.text)


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("GET", "/v2/foo/bar", 404),
        ("GET", "/v2/foo/tags/list/extra", 404),
        ("GET", "/v2/foo/unknown/thing", 404),
        ("GET", "/nothing-here", 404),
        ("PATCH", "/v2/", 405),
        ("POST", "/v2/foo/manifests/latest", 405),
        ("POST", "/v2/foo/tags/list", 405),
        ("PUT", "/v2/foo/blobs/" + sha256(b"x"), 405),
    ],
)
def test_unknown_endpoints_and_methods_use_the_envelope(registry, method, path, status):
    st, hdrs, data = _raw(registry, method, path)
    assert_envelope(st, hdrs, data, status, "UNSUPPORTED" if status == 405 else None)


def test_api_version_header_on_success_and_on_errors(registry, repo):
    assert requests.get(registry.url + "/v2/").headers[
        "Docker-Distribution-API-Version"] == "registry/2.0"
    for response in (
        requests.get(f"{registry.url}/v2/{repo}/manifests/nope"),
        requests.head(f"{registry.url}/v2/{repo}/manifests/nope"),
        requests.get(f"{registry.url}/v2/{repo}/blobs/{sha256(b'nope')}"),
        requests.get(f"{registry.url}/v2/{repo}/tags/list"),
        requests.get(f"{registry.url}/v2/BAD/tags/list"),
        requests.get(f"{registry.url}/v2/nowhere/x/y"),
    ):
        assert response.status_code >= 400
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def _cases(registry, repo: str) -> list[tuple[str, str, dict, int, str]]:
    url = registry.url
    upload = requests.post(f"{url}/v2/{repo}/blobs/uploads/").headers["Location"]
    if upload.startswith("/"):
        upload = url + upload
    return [
        ("GET", f"{url}/v2/{repo}/manifests/missing", {}, 404, "MANIFEST_UNKNOWN"),
        ("GET", f"{url}/v2/{repo}/blobs/{sha256(b'missing')}", {}, 404, "BLOB_UNKNOWN"),
        ("GET", f"{url}/v2/{repo}/blobs/sha256:short", {}, 400, "DIGEST_INVALID"),
        ("GET", f"{url}/v2/{repo}-none/tags/list", {}, 404, "NAME_UNKNOWN"),
        ("GET", f"{url}/v2/{repo}/blobs/uploads/{uuid.uuid4()}", {}, 404,
         "BLOB_UPLOAD_UNKNOWN"),
        ("PUT", f"{url}/v2/{repo}/manifests/t", {"data": b"{", "headers": {
            "Content-Type": "application/vnd.oci.image.manifest.v1+json"}}, 400,
         "MANIFEST_INVALID"),
        ("PATCH", upload, {"data": b"abc", "headers": {"Content-Range": "5-7"}}, 416,
         "RANGE_INVALID"),
        # Last: a digest mismatch ends the session.
        ("PUT", upload, {"params": {"digest": sha256(b"a")}, "data": b"b"}, 400,
         "DIGEST_INVALID"),
    ]


def test_every_error_uses_the_envelope(registry, repo):
    push_blob(registry.url, repo, b"make the repository exist")
    for method, url, kwargs, status, code in _cases(registry, repo):
        r = requests.request(method, url, **kwargs)
        assert_envelope(r.status_code, {k.lower(): v for k, v in r.headers.items()},
                        r.content, status, code)
