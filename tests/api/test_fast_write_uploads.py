"""The body-less upload requests on the fast write route (web/fast_writes.py): the
upload POST that opens a session and the ``PUT ?digest=`` that ends it answer what
Flask answers (status, headers and their order, body, access log, metrics, events),
sessions cross between the routes, errors and refusals are Flask's, and what must
stay Flask's does. The mount and manifest PUT cases are in test_fast_writes.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.fast_reads_support import _digest
from tests.api.fast_writes_support import (
    FLASK_SETTINGS,
    SIDES,
    WriteHarness,
    _basic,
    _token,
)
from tests.auth.support import RULES


@pytest.fixture
def open_registry(tmp_path: Path) -> WriteHarness:
    return WriteHarness(tmp_path, None)


LAYER = b"layer bytes " * 1000
LAYER_DIGEST = _digest(LAYER)


def _open(h: WriteHarness, repo: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """A session on each twin of ``repo``, opened through Flask (by side)."""
    ids = {}
    for side in SIDES:
        r = h.send(False, "POST", f"/v2/{side}/{repo}/blobs/uploads/", headers=headers)
        assert r["status"].startswith("202"), r
        ids[side] = dict(r["headers"])["Docker-Upload-UUID"]
    return ids


def _patch(h: WriteHarness, repo: str, uploads: dict[str, str], data: bytes = LAYER,
           headers: dict[str, str] | None = None) -> None:
    """``data`` appended to both twins' sessions (a PATCH: always Flask's)."""
    for side in SIDES:
        r = h.client.patch(f"/v2/{side}/{repo}/blobs/uploads/{uploads[side]}", data=data,
                           headers=headers or {})
        assert r.status_code == 202, r.get_data()


def _blob(h: WriteHarness, repo: str, digest: str, headers: dict[str, str] | None = None
          ) -> list[tuple[int, bytes, str | None]]:
    """Both twins' blob ``digest``: status, bytes and Docker-Content-Digest."""
    out = []
    for side in SIDES:
        r = h.client.get(f"/v2/{side}/{repo}/blobs/{digest}", headers=headers or {})
        out.append((r.status_code, r.get_data(), r.headers.get("Docker-Content-Digest")))
    return out


def test_upload_post_and_put(open_registry: WriteHarness) -> None:
    h = open_registry
    # A session in a new repository: it makes the repository (and says so).
    answer = h.pair("POST", "/v2/{p}/up/blobs/uploads/", fast=True, status=202)
    assert [e["action"] for e in answer["events"]] == ["repository.created"]
    assert ("Location", "/v2/wb/up/blobs/uploads/{u}") in answer["headers"]
    assert ("Range", "0-0") in answer["headers"]
    assert answer["log"][1]["route"] == "/v2/{name}/blobs/uploads/{id}"
    uploads = answer["uploads"]
    assert uploads["wa"] != uploads["wb"]
    # PATCHed through Flask, then ended here: the blob is there, its bytes and digest.
    _patch(h, "up", uploads)
    answer = h.pair("PUT", f"/v2/{{p}}/up/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
                    fast=True, status=201, uploads=uploads)
    assert ("Docker-Content-Digest", LAYER_DIGEST) in answer["headers"]
    assert ("Location", f"/v2/wb/up/blobs/{LAYER_DIGEST}") in answer["headers"]
    assert _blob(h, "up", LAYER_DIGEST) == [(200, LAYER, LAYER_DIGEST)] * 2
    # The session is gone: ending it again is BLOB_UPLOAD_UNKNOWN, answered here.
    answer = h.pair("PUT", f"/v2/{{p}}/up/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
                    fast=True, status=404, uploads=uploads)
    assert b"BLOB_UPLOAD_UNKNOWN" in answer["body"]
    # An existing repository, with the Content-Length: 0 docker sends; a client's
    # headers that change nothing.
    answer = h.pair("POST", "/v2/{p}/up/blobs/uploads/", headers={
        "Content-Length": "0", "User-Agent": "containerd/2.0", "Accept-Encoding": "gzip"},
        fast=True, status=202)
    assert answer["events"] == []
    # An empty blob: the PUT ends a session that never got a byte.
    empty = _digest(b"")
    h.pair("PUT", f"/v2/{{p}}/up/blobs/uploads/{{u}}?digest={empty}",
           headers={"Content-Length": "0"}, fast=True, status=201, uploads=answer["uploads"])
    assert _blob(h, "up", empty) == [(200, b"", empty)] * 2


def test_upload_sessions_cross_routes(open_registry: WriteHarness) -> None:
    """A session opened here ends through Flask, and one opened by Flask ends here."""
    h = open_registry
    side = SIDES[1]
    for opened_fast in (True, False):
        data = LAYER + (b"x" if opened_fast else b"y")
        r = h.send(opened_fast, "POST", f"/v2/{side}/cross/blobs/uploads/")
        assert r["status"].startswith("202") and r["flask"] is not opened_fast, r
        location = dict(r["headers"])["Location"]
        p = h.client.patch(location, data=data)
        assert p.status_code == 202 and p.headers["Range"] == f"0-{len(data) - 1}"
        r = h.send(not opened_fast, "PUT", f"{location}?digest={_digest(data)}")
        assert r["status"].startswith("201") and r["flask"] is opened_fast, r
        got = h.client.get(f"/v2/{side}/cross/blobs/{_digest(data)}")
        assert got.status_code == 200 and got.get_data() == data
        assert got.headers["Docker-Content-Digest"] == _digest(data)
    # A status GET of a session opened here: Flask's, the same session.
    r = h.send(True, "POST", f"/v2/{side}/cross/blobs/uploads/")
    location = dict(r["headers"])["Location"]
    assert h.client.get(location).status_code == 204


def test_upload_put_errors(open_registry: WriteHarness) -> None:
    """The core's refusals of a body-less PUT, answered here with Flask's envelope."""
    h = open_registry
    never = "0b0e7f1e-8a0b-4a4e-9a38-6f1b5c1f0000"
    answer = h.pair("PUT", f"/v2/{{p}}/err/blobs/uploads/{never}?digest={LAYER_DIGEST}",
                    fast=True, status=404)
    assert b"BLOB_UPLOAD_UNKNOWN" in answer["body"]
    # A wrong digest: DIGEST_INVALID, the session discarded, nothing visible.
    uploads = _open(h, "err")
    _patch(h, "err", uploads)
    wrong = _digest(b"something else")
    answer = h.pair("PUT", f"/v2/{{p}}/err/blobs/uploads/{{u}}?digest={wrong}",
                    fast=True, status=400, uploads=uploads)
    assert b"DIGEST_INVALID" in answer["body"] and answer["events"] == []
    assert _blob(h, "err", wrong)[1][0] == 404
    assert _blob(h, "err", LAYER_DIGEST)[1][0] == 404
    assert h.client.get(f"/v2/wb/err/blobs/uploads/{uploads['wb']}").status_code == 404
    # Malformed and unsupported digests, a session of another repository.
    for digest in ("sha256:zz", "md5:" + "0" * 32, "sha256"):
        uploads = _open(h, "err")
        h.pair("PUT", f"/v2/{{p}}/err/blobs/uploads/{{u}}?digest={digest}", fast=True,
               status=400, uploads=uploads)
    uploads = _open(h, "err")
    _patch(h, "err", uploads)
    answer = h.pair("PUT", f"/v2/{{p}}/other/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
                    fast=True, status=404, uploads=uploads)
    assert b"BLOB_UPLOAD_UNKNOWN" in answer["body"]
    # ... which is still there for its own repository.
    h.pair("PUT", f"/v2/{{p}}/err/blobs/uploads/{{u}}?digest={LAYER_DIGEST}", fast=True,
           status=201, uploads=uploads)


def test_upload_limits(tmp_path: Path) -> None:
    """A per-owner session limit and a quota: the core's refusals, answered here."""
    h = WriteHarness(tmp_path, "basic", limits={"max_uploads_per_user": 4},
                     auth={"rules": [*RULES, {"users": ["alice"], "repositories": ["w?/**"],
                                              "actions": ["*"]}]})
    alice = _basic("alice")
    h.client.get("/v2/", headers=alice)  # verified
    for _ in range(2):
        h.pair("POST", "/v2/{p}/lim/blobs/uploads/", headers=alice, fast=True, status=202)
    # Four sessions (two on each twin), all alice's: the next is refused on both.
    answer = h.pair("POST", "/v2/{p}/lim/blobs/uploads/", headers=alice, fast=True,
                    status=429)
    assert ("Retry-After", "60") in answer["headers"]


def test_upload_quota(open_registry: WriteHarness) -> None:
    """A quota lowered under a session's bytes: its PUT is refused (DENIED), as Flask's."""
    h = open_registry
    ids = {}
    for side in SIDES:
        r = h.client.post("/api/v1/quotas", json={"namespace": f"{side}/q/**",
                                                   "limit": 10 * len(LAYER)})
        assert r.status_code == 201, r.get_data()
        ids[side] = r.get_json()["id"]
    uploads = _open(h, "q/a")
    _patch(h, "q/a", uploads)
    for side in SIDES:
        r = h.client.patch(f"/api/v1/quotas/{ids[side]}", json={"limit": len(LAYER) // 2})
        assert r.status_code == 200, r.get_data()
    answer = h.pair("PUT", f"/v2/{{p}}/q/a/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
                    fast=True, status=403, uploads=uploads)
    assert b"DENIED" in answer["body"]
    assert [e["action"] for e in answer["events"]] == ["quota.refused"]
    assert _blob(h, "q/a", LAYER_DIGEST)[1][0] == 404


def test_uploads_that_go_to_flask(open_registry: WriteHarness) -> None:
    h = open_registry
    post = "/v2/{p}/fl/blobs/uploads/"
    # Any query string on the POST: a monolithic push, an algorithm, anything else.
    h.pair("POST", f"{post}?digest={LAYER_DIGEST}", LAYER, fast=False, status=201)
    h.pair("POST", f"{post}?digest-algorithm=sha256", fast=False, status=202)
    h.pair("POST", f"{post}?digest-algorithm=md5", fast=False, status=400)
    h.pair("POST", f"{post}?x=1", fast=False, status=202)
    h.pair("POST", f"{post}?", fast=True, status=202)  # an empty query is none
    # A body, a chunked one, a cookie; an id in the POST's path; a bad name.
    h.pair("POST", post, b"abc", fast=False, status=202)
    h.pair("POST", post, b"", {"Transfer-Encoding": "chunked"}, fast=False, status=202)
    h.pair("POST", post, headers={"Cookie": "a=b"}, fast=False, status=202)
    h.pair("POST", f"{post}abc", fast=False, status=405)
    h.pair("POST", "/v2/{p}/Fl/blobs/uploads/", fast=False, status=400)
    h.pair("POST", "/v2/{p}//fl/blobs/uploads/", fast=False, status=400)
    # The PUT: anything but one plain digest, a body, a Content-Range, chunked, a cookie.
    put = "/v2/{p}/fl/blobs/uploads/{u}"
    for query, status in ((f"digest={LAYER_DIGEST}&digest={LAYER_DIGEST}", 201),
                          (f"digest={LAYER_DIGEST}&x=1", 201),
                          ("digest=", 400), ("", 400), ("x=1", 400),
                          (f"digest={LAYER_DIGEST.replace('sha256', 'sha256+x')}", 400)):
        uploads = _open(h, "fl")
        _patch(h, "fl", uploads)
        h.pair("PUT", f"{put}?{query}" if query else put, fast=False, status=status,
               uploads=uploads)
    # Go clients' form (skopeo, docker, containerd): the digest percent-encoded.
    uploads = _open(h, "fl")
    _patch(h, "fl", uploads)
    h.pair("PUT", f"{put}?digest={LAYER_DIGEST.replace(':', '%3A')}", fast=True,
           status=201, uploads=uploads)
    for body, headers, status in (
            (LAYER, {}, 201),  # the last chunk with the PUT
            (LAYER, {"Content-Range": f"0-{len(LAYER) - 1}"}, 201),
            (b"", {"Content-Range": "0-0", "Content-Length": "0"}, 416),
            (b"", {"Transfer-Encoding": "chunked"}, 201),
            (b"", {"Cookie": "a=b"}, 201)):
        uploads = _open(h, "fl")
        if not body:
            _patch(h, "fl", uploads)
        h.pair("PUT", f"{put}?digest={LAYER_DIGEST}", body, headers, fast=False,
               status=status, uploads=uploads)
    uploads = _open(h, "fl")
    h.pair("PUT", f"/v2/{{p}}/Fl/blobs/uploads/{{u}}?digest={LAYER_DIGEST}", fast=False,
           status=400, uploads=uploads)
    h.pair("PUT", f"/v2/{{p}}/fl/blobs/uploads/?digest={LAYER_DIGEST}", fast=False,
           status=404)


def test_upload_basic_auth(tmp_path: Path) -> None:
    rules = [*RULES, {"users": ["alice", "carol"], "repositories": ["w?/**"], "actions": ["*"]},
             {"users": ["bob"], "repositories": ["w?/**"], "actions": ["pull"]}]
    h = WriteHarness(tmp_path, "basic", auth={"rules": rules})
    alice, carol = _basic("alice"), _basic("carol")
    for who in (alice, carol, _basic("bob")):
        h.client.get("/v2/", headers=who)  # verified in this process
    answer = h.pair("POST", "/v2/{p}/auth/blobs/uploads/", headers=alice, fast=True,
                    status=202)
    assert answer["log"][1]["user"] == "alice"
    assert answer["events"][0]["body"]["actor"]["name"] == "alice"
    uploads = answer["uploads"]
    _patch(h, "auth", uploads, headers=alice)
    # carol may push here too, but the session is alice's: unknown to her, as Flask says.
    answer = h.pair("PUT", f"/v2/{{p}}/auth/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
                    headers=carol, fast=True, status=404, uploads=uploads)
    assert b"BLOB_UPLOAD_UNKNOWN" in answer["body"]
    answer = h.pair("PUT", f"/v2/{{p}}/auth/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
                    headers=alice, fast=True, status=201, uploads=uploads)
    assert answer["log"][1]["user"] == "alice"
    assert _blob(h, "auth", LAYER_DIGEST, alice) == [(200, LAYER, LAYER_DIGEST)] * 2
    # Anonymous, a wrong password, bob (pull only): Flask's 401 and 403.
    uploads = _open(h, "auth", alice)
    for headers, status in (({}, 401), (_basic("alice", "wrong"), 401),
                            (_basic("bob"), 403)):
        h.pair("POST", "/v2/{p}/auth/blobs/uploads/", headers=headers, fast=False,
               status=status)
        h.pair("PUT", f"/v2/{{p}}/auth/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
               headers=headers, fast=False, status=status, uploads=uploads)
    # A session opened by Flask for alice ends here for her.
    _patch(h, "auth", uploads, headers=alice)
    h.pair("PUT", f"/v2/{{p}}/auth/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
           headers=alice, fast=True, status=201, uploads=uploads)


def test_upload_token_auth(tmp_path: Path) -> None:
    rules = [*RULES, {"users": ["alice"], "repositories": ["w?/**"], "actions": ["*"]}]
    h = WriteHarness(tmp_path, "token", auth={"rules": rules})
    side = SIDES[1]
    token = {"Authorization": "Bearer " + _token(h, "alice", f"repository:{side}/t:pull,push")}
    r = h.send(True, "POST", f"/v2/{side}/t/blobs/uploads/", headers=token)
    assert r["status"].startswith("202") and not r["flask"], r
    assert r["log"][1]["user"] == "alice"
    location = dict(r["headers"])["Location"]
    assert h.client.patch(location, data=LAYER, headers=token).status_code == 202
    r = h.send(True, "PUT", f"{location}?digest={LAYER_DIGEST}", headers=token)
    assert r["status"].startswith("201") and not r["flask"], r
    # A token for another repository: Flask's challenge.
    other = {"Authorization": "Bearer " + _token(h, "alice", "repository:wb/u:pull,push")}
    r = h.send(True, "POST", f"/v2/{side}/t/blobs/uploads/", headers=other)
    assert r["status"].startswith("401") and r["flask"], r


def test_uploads_switched_off_rate_limited_and_mirrored(tmp_path: Path) -> None:
    for name, settings in FLASK_SETTINGS:
        h = WriteHarness(tmp_path / name, None, **settings)
        answer = h.pair("POST", "/v2/{p}/app/blobs/uploads/", fast=False, status=202)
        _patch(h, "app", answer["uploads"])
        h.pair("PUT", f"/v2/{{p}}/app/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
               fast=False, status=201, uploads=answer["uploads"])
    h = WriteHarness(tmp_path / "prefix", None, mirror={"upstreams": [{
        "name": "hub", "url": "http://127.0.0.1:9"}]})
    h.pair("POST", "/v2/{p}/app/blobs/uploads/", fast=True, status=202)
    r = h.send(True, "POST", "/v2/hub/library/x/blobs/uploads/")
    assert r["flask"]
    r = h.send(True, "PUT", f"/v2/hub/library/x/blobs/uploads/abc?digest={LAYER_DIGEST}")
    assert r["flask"]


def test_upload_outage_and_range_refusal(open_registry: WriteHarness) -> None:
    """A database down (503 + Retry-After) when a session opens or ends, and put_upload's
    RangeInvalid branch (its Location and Range headers), answered here as by Flask."""
    import sqlalchemy.exc as sa_exc

    from ociregistry.core.errors import RangeInvalid

    h = open_registry
    uploads = h.runtime.registry.uploads
    start, finish = uploads.start, uploads.finish

    def down(*args: object, **kwargs: object) -> None:
        raise sa_exc.OperationalError("INSERT", {}, Exception("connection refused"))

    uploads.start = down  # type: ignore[method-assign]
    try:
        answer = h.pair("POST", "/v2/{p}/out/blobs/uploads/", fast=True, status=503)
    finally:
        uploads.start = start  # type: ignore[method-assign]
    assert b"UNAVAILABLE" in answer["body"] and dict(answer["headers"]).get("Retry-After")
    sessions = _open(h, "out")
    _patch(h, "out", sessions)
    uploads.finish = down  # type: ignore[method-assign]
    try:
        h.pair("PUT", f"/v2/{{p}}/out/blobs/uploads/{{u}}?digest={LAYER_DIGEST}", fast=True,
               status=503, uploads=sessions)
    finally:
        uploads.finish = finish  # type: ignore[method-assign]

    def out_of_order(*args: object, **kwargs: object) -> None:
        raise RangeInvalid("chunk out of order", {"expected_start": 0, "start": 1})

    uploads.finish = out_of_order  # type: ignore[method-assign]
    try:
        answer = h.pair("PUT", f"/v2/{{p}}/out/blobs/uploads/{{u}}?digest={LAYER_DIGEST}",
                        fast=True, status=416, uploads=sessions)
    finally:
        uploads.finish = finish  # type: ignore[method-assign]
    assert ("Location", "/v2/wb/out/blobs/uploads/{u}") in answer["headers"]
    assert ("Range", f"0-{len(LAYER) - 1}") in answer["headers"]
    # The session is still there: ended now, here.
    h.pair("PUT", f"/v2/{{p}}/out/blobs/uploads/{{u}}?digest={LAYER_DIGEST}", fast=True,
           status=201, uploads=sessions)
