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
