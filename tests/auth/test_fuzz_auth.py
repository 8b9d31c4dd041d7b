"""Property-based: malformed names, digests, Content-Range, manifests and tokens.

Thrown at registries with token and Basic authentication (Flask test client):
never a 500, always the OCI error envelope, and nothing is stored, neither by
callers without the right to write nor by writes whose input is malformed.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ociregistry.metadata import schema
from tests.auth.conftest import OCI_MANIFEST, Registry, build
from tests.auth.support import basic, bearer, claims

SETTINGS = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,  # no wall-clock limits: CI machines are slow and shared
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

NAMES = st.one_of(
    st.sampled_from(["team-a/app", "public/x", "users/alice/t", "team-a/../users/bob/x",
                     "team-a//app", "TEAM-A/app", "team-a/app/", "a" * 300, "%2e%2e/x",
                     "team-a/app\x00", "team-a/*", "**", "users/${user}/x", "é/x"]),
    st.from_regex(r"[a-z0-9._/-]{1,40}", fullmatch=True),
    st.text(max_size=40),
)
DIGESTS = st.one_of(
    st.sampled_from(["sha256:", "sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:abc",
                     "sha512:" + "0" * 64, "sha256:" + "0" * 64 + "/../x", ":", ""]),
    st.from_regex(r"sha(256|512):[0-9a-f]{0,130}", fullmatch=True),
    st.text(max_size=80),
)
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
    max_size=80)
RANGES = st.one_of(
    HEADER_TEXT,
    st.from_regex(r"(bytes )?-?[0-9]{0,25}-[0-9]{0,25}(/[0-9*]{0,5})?", fullmatch=True),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=15,
)
MANIFESTS = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({
        "schemaVersion": st.one_of(st.just(2), JSON_VALUES),
        "mediaType": st.one_of(st.just(OCI_MANIFEST), st.text(max_size=20)),
        "config": st.one_of(JSON_VALUES, st.fixed_dictionaries({
            "mediaType": st.text(max_size=20), "digest": DIGESTS,
            "size": st.one_of(st.integers(), JSON_VALUES)})),
        "layers": st.one_of(JSON_VALUES, st.lists(st.fixed_dictionaries({
            "mediaType": st.text(max_size=20), "digest": DIGESTS, "size": st.integers()}),
            max_size=3)),
    }).map(lambda d: json.dumps(d).encode()),
)
_OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


TOKENS = st.one_of(
    HEADER_TEXT,
    st.tuples(JSON_VALUES, JSON_VALUES, st.binary(max_size=64)).map(
        lambda t: ".".join((_b64(json.dumps(t[0]).encode()), _b64(json.dumps(t[1]).encode()),
                            _b64(t[2])))),
    st.tuples(st.sampled_from(["none", "HS256", "ES256", "RS256", "EdDSA", ""]),
              st.one_of(st.none(), st.text(max_size=10)), JSON_VALUES).map(
        lambda t: ".".join((_b64(json.dumps({"alg": t[0], "kid": t[1]}).encode()),
                            _b64(json.dumps(t[2]).encode()), ""))),
    # well-formed and signed, but by a key nobody trusts
    st.builds(lambda access: jwt.encode(claims("alice", access), _OTHER_KEY, "ES256",
                                        headers={"kid": "x"}), JSON_VALUES),
)
AUTHORIZATION = st.one_of(
    st.none(),
    TOKENS.map(lambda t: f"Bearer {t}"),
    HEADER_TEXT,
    st.tuples(HEADER_TEXT, HEADER_TEXT).map(
        lambda p: "Basic " + base64.b64encode(f"{p[0]}:{p[1]}".encode()).decode()),
    st.just("Basic " + base64.b64encode(b"bob:bob-secret").decode()),  # bob can't write
)


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Registry]:
    base = Path(tmp_path_factory.mktemp("fuzz-auth"))
    return {mode: build(base / mode, mode) for mode in ("token", "basic")}


def stored(reg: Registry) -> tuple:
    tables = (schema.manifests, schema.tags, schema.blobs, schema.repository_blobs,
              schema.uploads)
    with reg.runtime.metadata.read() as conn:
        counts = tuple(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                       for t in tables)
    root = Path(reg.runtime.settings.storage_root)
    files = sum(len(f) for _, _, f in os.walk(root / "blobs")) + len(
        os.listdir(root / "uploads"))
    return counts, files


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code >= 400 and response.request.method != "HEAD":
        errors = json.loads(response.get_data())["errors"]
        assert errors and all(isinstance(e["code"], str) for e in errors)


METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"])
TAILS = st.sampled_from(["manifests/latest", "manifests/{digest}", "blobs/{digest}",
                         "blobs/uploads/", "blobs/uploads/{digest}", "tags/list",
                         "referrers/{digest}", "blobs/uploads/?digest={digest}",
                         "blobs/uploads/?mount={digest}&from={name}"])


@SETTINGS
@example(mode="token", method="POST", name="team-a/app", tail="blobs/uploads/",
         digest="sha256:" + "0" * 64, authorization="Bearer ", content_range="0-0",
         body=b"x")
@given(mode=st.sampled_from(["token", "basic"]), method=METHODS, name=NAMES, tail=TAILS,
       digest=DIGESTS, authorization=AUTHORIZATION, content_range=RANGES,
       body=st.one_of(st.binary(max_size=100), MANIFESTS))
def test_without_write_access_nothing_is_stored(registries, mode, method, name, tail, digest,
                                                authorization, content_range, body):
    reg = registries[mode]
    before = stored(reg)
    path = "/v2/" + name + "/" + tail.format(digest=digest, name=name)
    headers = {"Content-Range": content_range, "Content-Type": OCI_MANIFEST}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        response = reg.open(path, method=method, headers=headers, data=body)
    except (ValueError, UnicodeError):
        return  # the test client itself refuses the URL; no request was made
    check(response)
    assert response.status_code not in (201, 202), (path, response.status_code)
    assert stored(reg) == before


def _writer(reg: Registry, mode: str) -> dict[str, str]:
    if mode == "basic":
        return basic("alice")
    r = reg.get("/auth/token", query_string={
        "service": "test-registry", "scope": "repository:team-a/app:pull,push,delete"},
        headers=basic("alice"))
    return bearer(r.get_json()["token"])


@SETTINGS
@given(mode=st.sampled_from(["token", "basic"]), manifest=MANIFESTS,
       tag=st.one_of(st.just("v1"), st.text(max_size=20)), digest=DIGESTS.filter(bool),
       content_range=RANGES, body=st.binary(max_size=64))
def test_malformed_writes_with_write_access_store_nothing(registries, mode, manifest, tag,
                                                          digest, content_range, body):
    reg = registries[mode]
    auth = _writer(reg, mode)
    before = stored(reg)
    r = reg.put(f"/v2/team-a/app/manifests/{tag}", data=manifest,
                headers={**auth, "Content-Type": OCI_MANIFEST})
    check(r)
    assert r.status_code >= 400  # references nothing that exists: never accepted
    r = reg.post("/v2/team-a/app/blobs/uploads/", query_string={"digest": digest}, data=body,
                 headers=auth)
    check(r)
    assert r.status_code >= 400  # the digest is never the body's (see the strategy)
    r = reg.patch(f"/v2/team-a/app/blobs/uploads/{digest}", data=body,
                  headers={**auth, "Content-Range": content_range})
    check(r)
    assert r.status_code >= 400
    assert stored(reg) == before


@SETTINGS
@given(service=HEADER_TEXT, scope=st.lists(HEADER_TEXT, max_size=4),
       account=HEADER_TEXT, authorization=AUTHORIZATION,
       form=st.dictionaries(st.sampled_from(["grant_type", "username", "password",
                                             "refresh_token", "client_id", "scope",
                                             "service", "access_type"]),
                            HEADER_TEXT, max_size=8))
def test_token_endpoint_never_fails_badly(registries, service, scope, account, authorization,
                                          form):
    reg = registries["token"]
    headers = {"Authorization": authorization} if authorization else {}
    r = reg.get("/auth/token", query_string={"service": service, "scope": scope,
                                             "account": account}, headers=headers)
    check(r)
    if r.status_code == 200:
        granted = jwt.decode(r.get_json()["token"], options={"verify_signature": False})
        # bob is the only user the strategies know the password of
        assert granted["sub"] in ("", "bob")
        for entry in granted["access"]:
            if entry["type"] == "repository":
                assert set(entry["actions"]) <= {"pull"}, entry
    r = reg.post("/auth/token", data=form, headers=headers)
    check(r)
    assert r.status_code != 200 or form.get("grant_type") in ("password", "refresh_token")
