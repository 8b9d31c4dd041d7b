"""Hostile request input through the Flask app (test client): never a 500.

Whatever the path, query or headers, the answer is a client error in the OCI
envelope (or a success), never an internal error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ociregistry.config import load_settings
from ociregistry.core import media_types as mt
from ociregistry.runtime import build_runtime
from ociregistry.web.app import create_app

SETTINGS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
REPO = "fuzz/app"
BLOB = b"a blob that exists"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    data = Path(tmp_path_factory.mktemp("web")) / "data"
    settings_ = load_settings(environ={}, overrides={"data_dir": str(data)})
    app = create_app(runtime=build_runtime(settings_, migrate=True))
    c = app.test_client()
    r = c.post(f"/v2/{REPO}/blobs/uploads/?digest={BLOB_DIGEST}", data=BLOB)
    assert r.status_code == 201
    return c


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:500])
    if response.status_code >= 400 and response.request.method != "HEAD":
        errors = json.loads(response.get_data())["errors"]
        assert errors and all(isinstance(e["code"], str) for e in errors)


NAMES = st.one_of(
    st.sampled_from(
        [REPO, "a", "a/b", "..", "a/../b", "A", "a//b", "a%2Fb", "a\n", "é", "a" * 300]
    ),
    st.text(max_size=40),
)
TEXT = st.text(max_size=60)
# what an HTTP header can carry (latin-1, no line breaks)
HEADER = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
REFS = st.one_of(st.sampled_from(["latest", BLOB_DIGEST, "sha256:", "sha256:abc", "md5:x"]), TEXT)


def path(*parts: str) -> str:
    return "/".join(quote(p, safe="/:") for p in parts)


@SETTINGS
@given(name=NAMES, n=TEXT, last=TEXT)
@example(name=REPO, n="²", last="")
@example(name=REPO, n="1" * 5000, last="")
@example(name=REPO, n="99999999999999999999999", last="\x00")
def test_listings(client, name, n, last):
    query = {"n": n, "last": last}
    check(client.get("/v2/" + path(name, "tags/list"), query_string=query))
    check(client.get("/v2/_catalog", query_string=query))
    check(client.get("/v2/" + path(name, "referrers", BLOB_DIGEST),
                     query_string={"artifactType": last, "last": n}))


@SETTINGS
@given(name=NAMES, ref=REFS, accept=HEADER)
def test_manifest_and_blob_reads(client, name, ref, accept):
    for method in ("GET", "HEAD", "DELETE"):
        check(client.open("/v2/" + path(name, "manifests", ref), method=method,
                          headers={"Accept": accept}))
    check(client.get("/v2/" + path(name, "blobs", ref), headers={"Range": accept}))
    check(client.get("/v2/" + path(REPO, "blobs", BLOB_DIGEST), headers={"Range": accept}))
    check(client.get("/v2/" + path(name, "referrers", ref)))


@SETTINGS
@given(
    ref=REFS,
    content_type=st.one_of(st.sampled_from(sorted(mt.ALL_MANIFESTS)), HEADER),
    body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    tags=st.lists(TEXT, max_size=3),
)
def test_manifest_push(client, ref, content_type, body, tags):
    check(client.put("/v2/" + path(REPO, "manifests", ref), data=body,
                     headers={"Content-Type": content_type}, query_string={"tag": tags}))


@SETTINGS
@given(
    digest=REFS,
    mount=REFS,
    source=NAMES,
    algorithm=TEXT,
    content_range=st.one_of(HEADER, st.sampled_from(["0-2", "0-\xb2", "1" * 50 + "-" + "2" * 50])),
    body=st.binary(max_size=64),
)
def test_uploads(client, digest, mount, source, algorithm, content_range, body):
    base = "/v2/" + path(REPO, "blobs/uploads/")
    check(client.post(base, query_string={"digest": digest}, data=body))
    check(client.post(base, query_string={"mount": mount, "from": source}))
    check(client.post(base, query_string={"digest-algorithm": algorithm}))
    r = client.post(base)
    assert r.status_code == 202
    location = r.headers["Location"]
    check(client.patch(location, data=body, headers={"Content-Range": content_range}))
    check(client.get(location))
    check(client.put(location, query_string={"digest": digest}, data=body,
                     headers={"Content-Range": content_range}))
    check(client.delete(location))
    check(client.patch(base + quote(content_range, safe=""), data=body))


# -- descriptor sizes -------------------------------------------------------------------
SIZES = st.one_of(st.just(len(BLOB)), st.integers(min_value=0, max_value=2**63),
                  st.integers(max_value=-1))


@SETTINGS
@given(config_size=SIZES, layer_sizes=st.lists(SIZES, max_size=3))
@example(config_size=len(BLOB), layer_sizes=[len(BLOB), len(BLOB) + 1])
@example(config_size=0, layer_sizes=[])
def test_manifest_descriptor_sizes(client, config_size, layer_sizes):
    """Whatever sizes a manifest declares for a blob the repository holds, it is
    stored only when every one of them is the blob's size."""
    def descriptor(size: int) -> dict:
        return {"mediaType": "application/octet-stream", "digest": BLOB_DIGEST, "size": size}

    body = json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": descriptor(config_size),
        "layers": [descriptor(s) for s in layer_sizes],
    }).encode()
    r = client.put("/v2/" + path(REPO, "manifests", "sizes"), data=body,
                   headers={"Content-Type": mt.OCI_MANIFEST})
    check(r)
    if all(s == len(BLOB) for s in [config_size, *layer_sizes]):
        assert r.status_code == 201, r.get_data()
    else:
        assert r.status_code == 400, r.get_data()
        error = json.loads(r.get_data())["errors"][0]
        assert error["code"] == "MANIFEST_INVALID"
        if all(s >= 0 for s in [config_size, *layer_sizes]):
            assert error["detail"]["digest"] == BLOB_DIGEST


# -- chunked framing through gunicorn's own parser -----------------------------------------
CHUNK = st.tuples(
    st.binary(max_size=40),
    st.one_of(st.none(), st.binary(max_size=6)),  # a size line other than the right one
    st.one_of(st.just(b"\r\n"), st.binary(max_size=3)),  # what ends the chunk's data
)
TRAILER = st.one_of(st.just(b"\r\n"), st.just(b"X-T: 1\r\n\r\n"), st.binary(max_size=12))


def _chunked(chunks: list[tuple[bytes, bytes | None, bytes]], last: bytes, trailer: bytes
             ) -> tuple[bytes, bool]:
    """The framed body, and whether it is well formed."""
    out, valid = [], True
    for data, size_line, end in chunks:
        if not data:
            continue  # an empty chunk would end the body
        out += [size_line if size_line is not None else b"%x" % len(data), b"\r\n", data, end]
        valid &= size_line is None and end == b"\r\n"
    out += [last, b"\r\n", trailer]
    return b"".join(out), valid and last == b"0" and trailer in (b"\r\n", b"X-T: 1\r\n\r\n")


@SETTINGS
@given(chunks=st.lists(CHUNK, max_size=4), last=st.one_of(st.just(b"0"), st.binary(max_size=3)),
       trailer=TRAILER)
@example(chunks=[(b"hello", b"zz", b"\r\n")], last=b"0", trailer=b"\r\n")
@example(chunks=[(b"hello", None, b"XX")], last=b"0", trailer=b"\r\n")
@example(chunks=[(b"hello", b"-5", b"\r\n")], last=b"0", trailer=b"\r\n")
@example(chunks=[(b"hello", b"ffffffffffffffffffff", b"\r\n")], last=b"0", trailer=b"\r\n")
def test_chunked_bodies_parse_or_fail_as_client_errors(chunks, last, trailer):
    """A chunked body read the way the registry reads it (body_chunks over gunicorn's
    parser) either yields exactly its data or fails as a malformed or truncated
    body: never any other error."""
    import socket

    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser
    from gunicorn.http.wsgi import create
    from werkzeug.exceptions import ClientDisconnected

    from ociregistry.web.body import MalformedBody, body_chunks

    body, valid = _chunked(chunks, last, trailer)
    head = b"PATCH /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(head + body)
        theirs.shutdown(socket.SHUT_WR)  # no more bytes: a short body ends, never hangs
        ours.settimeout(30)
        cfg = Config()
        request = next(RequestParser(cfg, ours, ("127.0.0.1", 1)))
        _, environ = create(request, ours, ("127.0.0.1", 1), ("127.0.0.1", 2), cfg)
        try:
            received = b"".join(bytes(c) for c in body_chunks(environ, environ["wsgi.input"]))
        except (MalformedBody, ClientDisconnected):
            assert not valid
            return
    if valid:
        assert received == b"".join(data for data, _, _ in chunks)
