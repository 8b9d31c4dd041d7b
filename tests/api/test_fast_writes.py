"""The fast write route (web/fast_writes.py) answers and writes exactly what Flask does.

In process, one app and one index: every request of a matrix (mounts plain and
percent-encoded, from a repository without the blob, without ``from``, with other
parameters or a body; manifest PUTs to a new repository, the same tag again, a moved
tag, by digest, with a subject, with ``?tag=``, a missing blob, bad JSON, a size lie,
a wrong digest, an empty body, too large, an immutable tag; the body-less upload POST
and PUT: a new session, its end after a Flask PATCH, either route's session ended by
the other, an unknown or foreign session, a wrong digest, a quota, a session limit, an
outage, and what stays Flask's (a query, a body, Content-Range); no auth, htpasswd and
tokens, refusals, robots; switched off, rate limits, mirror names) is sent to two
twin repositories, once with the fast route off (Flask answers) and once as
configured (tests/api/fast_writes_support.py). Equal: status, headers, body, the
access-log record, the Prometheus samples, and the events and tag-history rows each
request wrote, with their actor. Each case also says which side answered, so a fast
route that quietly always fell through fails here.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ociregistry.auth.robots import parse_scope
from tests.api.fast_reads_support import OCI_CONFIG, SERVICE, _digest
from tests.api.fast_writes_support import SIDES, WriteHarness
from tests.auth.support import PASSWORDS, RULES
from tests.helpers import DOCKER_MANIFEST, OCI_MANIFEST

CONFIG = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
CONFIG_DIGEST = _digest(CONFIG)


def _basic(user: str, password: str | None = None) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _manifest(config: bytes = CONFIG, media_type: str = DOCKER_MANIFEST, **extra: object
              ) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "layers": [],
                       "config": {"mediaType": OCI_CONFIG, "digest": _digest(config),
                                  "size": len(config)}, **extra}).encode()


def _twins(h: WriteHarness, repo: str, data: bytes = CONFIG,
           headers: dict[str, str] | None = None) -> None:
    """``data`` pushed (through Flask: a ?digest= POST) to both twins of ``repo``."""
    for side in SIDES:
        r = h.client.post(f"/v2/{side}/{repo}/blobs/uploads/?digest={_digest(data)}",
                          data=data, headers=headers or {})
        assert r.status_code == 201, r.get_data()


def _written(action: str) -> float:
    return REGISTRY.get_sample_value("registry_events_written_total", {"action": action}) or 0


@pytest.fixture
def open_registry(tmp_path: Path) -> WriteHarness:
    return WriteHarness(tmp_path, None)


# -- mounts -------------------------------------------------------------------------
def test_mounts(open_registry: WriteHarness) -> None:
    h = open_registry
    _twins(h, "src")
    mount = f"/v2/{{p}}/dst/blobs/uploads/?mount={CONFIG_DIGEST}&from={{p}}/src"
    written = _written("blob.mounted")
    answer = h.pair("POST", mount, fast=True, status=201)
    assert [e["action"] for e in answer["events"]] == ["repository.created", "blob.mounted"]
    assert _written("blob.mounted") == written + 2  # counted on both sides
    assert answer["events"][1]["body"]["actor"]["address"] == "192.0.2.7"
    assert answer["log"][1]["route"] == "/v2/{name}/blobs/uploads/{id}"
    h.pair("POST", mount, fast=True, status=201)  # linked already: 201 again
    # docker's form: percent-encoded, "from" first; plain-client headers.
    encoded = (f"/v2/{{p}}/enc/blobs/uploads/?from={{p}}%2Fsrc"
               f"&mount={CONFIG_DIGEST.replace(':', '%3A')}")
    h.pair("POST", encoded, headers={"User-Agent": "docker/27.0", "Content-Length": "0",
                                     "Accept-Encoding": "gzip"}, fast=True, status=201)
    # A malformed digest: the core's DIGEST_INVALID, answered here as Flask does.
    h.pair("POST", "/v2/{p}/dst/blobs/uploads/?mount=sha256:zz&from={p}/src", fast=True,
           status=400)


def test_mounts_that_go_to_flask(open_registry: WriteHarness) -> None:
    h = open_registry
    _twins(h, "src")
    unknown = "sha256:" + "6" * 64
    # Not in the source: rolled back, Flask tries again and opens an upload (a new id).
    h.pair("POST", f"/v2/{{p}}/dst/blobs/uploads/?mount={unknown}&from={{p}}/src",
           fast=False, status=202, same=False)
    for query in (f"mount={CONFIG_DIGEST}",  # no "from": any repository (Flask's)
                  f"mount={CONFIG_DIGEST}&from={{p}}/src&x=1",
                  f"mount={CONFIG_DIGEST}&from={{p}}/src&from={{p}}/src"):
        h.pair("POST", f"/v2/{{p}}/q/blobs/uploads/?{query}", fast=False, status=201)
    # "+" is a space to Flask: NAME_INVALID (its detail names each side's own source).
    h.pair("POST", f"/v2/{{p}}/q/blobs/uploads/?mount={CONFIG_DIGEST}&from={{p}}+src",
           fast=False, status=400, same=False)
    mount = f"/v2/{{p}}/dst/blobs/uploads/?mount={CONFIG_DIGEST}&from={{p}}/src"
    h.pair("POST", mount, b"abc", fast=False, status=201)  # a body
    h.pair("POST", mount, headers={"Cookie": "a=b"}, fast=False, status=201)
    h.pair("POST", mount.replace("/dst/", "/Bad/"), fast=False, status=400)  # NAME_INVALID
    h.pair("POST", mount.replace("from={p}/src", "from=Bad"), fast=False, status=400)


# -- manifest PUTs ------------------------------------------------------------------
def test_manifest_puts(open_registry: WriteHarness) -> None:
    h = open_registry
    _twins(h, "src")
    h.pair("POST", f"/v2/{{p}}/app/blobs/uploads/?mount={CONFIG_DIGEST}&from={{p}}/src",
           fast=True, status=201)
    body = _manifest()
    put = {"Content-Type": DOCKER_MANIFEST}
    answer = h.pair("PUT", "/v2/{p}/app/manifests/latest", body, put, fast=True, status=201)
    assert [e["action"] for e in answer["events"]] == ["manifest.pushed"]
    assert [r["action"] for r in answer["history"]] == ["push"]
    assert answer["history"][0]["actor_address"] == "192.0.2.7"
    assert answer["log"][1]["bytes_in"] == len(body)
    h.pair("PUT", "/v2/{p}/app/manifests/latest", body, put, fast=True, status=201)  # again
    digest = _digest(body)
    h.pair("PUT", f"/v2/{{p}}/app/manifests/{digest}", body, put, fast=True, status=201)
    # Another manifest under the same tag: tag.moved and a "move" in the history.
    other = json.dumps({"os": "linux", "v": 2}).encode()
    _twins(h, "app", other)
    answer = h.pair("PUT", "/v2/{p}/app/manifests/latest", _manifest(other), put, fast=True,
                    status=201)
    assert "tag.moved" in [e["action"] for e in answer["events"]]
    # A referrer: its subject answered in OCI-Subject.
    subject = {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": len(body)}
    answer = h.pair("PUT", "/v2/{p}/app/manifests/sig", _manifest(
        media_type=OCI_MANIFEST, subject=subject), {"Content-Type": OCI_MANIFEST},
        fast=True, status=201)
    assert ("OCI-Subject", digest) in answer["headers"]
    # A new repository straight away (the PUT makes it), no Content-Type (the body says).
    h.pair("PUT", "/v2/{p}/fresh/manifests/v1", _manifest(), fast=True, status=400)
    _twins(h, "fresh")
    h.pair("PUT", "/v2/{p}/fresh/manifests/v1", _manifest(), fast=True, status=201)


def test_manifest_put_errors(open_registry: WriteHarness) -> None:
    """The core's refusals, answered by the fast route with Flask's envelope."""
    h = open_registry
    _twins(h, "err")
    put = {"Content-Type": DOCKER_MANIFEST}
    url = "/v2/{p}/err/manifests/v1"
    missing = _manifest(b"never pushed")
    answer = h.pair("PUT", url, missing, put, fast=True, status=400)
    assert b"MANIFEST_BLOB_UNKNOWN" in answer["body"] and answer["events"] == []
    h.pair("PUT", url, b"{not json", put, fast=True, status=400)
    h.pair("PUT", url, b"", {**put, "Content-Length": "0"}, fast=True, status=400)
    h.pair("PUT", url, b"", put, fast=False, status=400)  # no Content-Length at all
    lie = json.loads(_manifest())
    lie["config"]["size"] += 1
    h.pair("PUT", url, json.dumps(lie).encode(), put, fast=True, status=400)
    h.pair("PUT", "/v2/{p}/err/manifests/sha256:" + "7" * 64, _manifest(), put, fast=True,
           status=400)
    h.pair("PUT", "/v2/{p}/err/manifests/bad:tag", _manifest(), put, fast=True, status=400)
    h.pair("PUT", "/v2/{p}/err/manifests/" + "t" * 200, _manifest(), put, fast=True,
           status=400)
    # A body shorter than its Content-Length: the client went away mid-body.
    short = {**put, "Content-Length": str(len(_manifest()) + 10)}
    h.pair("PUT", url, _manifest(), short, fast=True, status=400)


def test_manifest_puts_that_go_to_flask(tmp_path: Path) -> None:
    h = WriteHarness(tmp_path, None, limits={"max_manifest_size": 1024})
    _twins(h, "app")
    put = {"Content-Type": DOCKER_MANIFEST}
    answer = h.pair("PUT", "/v2/{p}/app/manifests/v1?tag=a&tag=b", _manifest(), put,
                    fast=False, status=201)
    assert ("OCI-Tag", "a") in answer["headers"]
    h.pair("PUT", "/v2/{p}/app/manifests/v2", _manifest(), {**put, "Cookie": "s=1"},
           fast=False, status=201)
    h.pair("PUT", "/v2/{p}/app/manifests/v3", _manifest(annotations={"a": "b" * 1100}), put,
           fast=False, status=413)
    h.pair("PUT", "/v2/{p}/App/manifests/v1", _manifest(), put, fast=False, status=400)
    h.pair("PUT", "/v2/{p}/app/manifests/v1/", _manifest(), put, fast=False, status=404)
    # Chunked (in process the body is not framed, so Flask reads none of it: a 400).
    h.pair("PUT", "/v2/{p}/app/manifests/v4", _manifest(),
           {**put, "Transfer-Encoding": "chunked"}, fast=False, status=400)


def test_immutable_tag_refused(open_registry: WriteHarness) -> None:
    h = open_registry
    r = h.client.post("/api/v1/tag-rules", json={"kind": "immutable",
                                                  "repositories": "**/frozen", "tags": "v1"})
    assert r.status_code == 201, r.get_data()
    _twins(h, "frozen")
    put = {"Content-Type": DOCKER_MANIFEST}
    h.pair("PUT", "/v2/{p}/frozen/manifests/v1", _manifest(), put, fast=True, status=201)
    other = json.dumps({"v": 3}).encode()
    _twins(h, "frozen", other)
    answer = h.pair("PUT", "/v2/{p}/frozen/manifests/v1", _manifest(other), put, fast=True,
                    status=403)
    assert answer["events"] == [] and answer["history"] == []


# -- authentication -----------------------------------------------------------------
def test_basic_auth(tmp_path: Path) -> None:
    rules = [*RULES, {"users": ["alice"], "repositories": ["w?/**"], "actions": ["*"]},
             {"users": ["bob"], "repositories": ["w?/**"], "actions": ["pull"]},
             {"users": ["carol"], "repositories": ["w?/own/**"], "actions": ["*"]}]
    h = WriteHarness(tmp_path, "basic", auth={"rules": rules})
    alice = _basic("alice")
    _twins(h, "src", headers=alice)  # alice's password is now verified in this process
    mount = f"/v2/{{p}}/dst/blobs/uploads/?mount={CONFIG_DIGEST}&from={{p}}/src"
    answer = h.pair("POST", mount, headers=alice, fast=True, status=201)
    assert answer["log"][1]["user"] == "alice"
    assert answer["events"][-1]["body"]["actor"]["name"] == "alice"
    put = {"Content-Type": DOCKER_MANIFEST, **alice}
    answer = h.pair("PUT", "/v2/{p}/dst/manifests/v1", _manifest(), put, fast=True,
                    status=201)
    assert answer["history"][0]["actor_name"] == "alice"
    # Anonymous, a wrong password, bob (pull only): Flask's 401 and 403.
    h.pair("PUT", "/v2/{p}/dst/manifests/v2", _manifest(), {"Content-Type": DOCKER_MANIFEST},
           fast=False, status=401)
    h.pair("POST", mount, fast=False, status=401)
    h.pair("PUT", "/v2/{p}/dst/manifests/v2", _manifest(),
           {"Content-Type": DOCKER_MANIFEST, **_basic("alice", "wrong")}, fast=False,
           status=401)
    bob = _basic("bob")
    h.client.get("/v2/", headers=bob)  # verified
    h.pair("PUT", "/v2/{p}/dst/manifests/v2", _manifest(),
           {"Content-Type": DOCKER_MANIFEST, **bob}, fast=False, status=403)
    # carol may push to w?/own/** but not pull w?/src: no mount, Flask opens an upload.
    carol = _basic("carol")
    h.client.get("/v2/", headers=carol)
    h.pair("POST", mount.replace("/dst/", "/own/x/"), headers=carol, fast=False, status=202,
           same=False)


def _token(h: WriteHarness, user: str, scope: str) -> str:
    r = h.client.get("/auth/token", query_string={"service": SERVICE, "scope": scope},
                     headers=_basic(user))
    assert r.status_code == 200, r.get_data()
    return r.get_json()["token"]


def test_token_auth(tmp_path: Path) -> None:
    rules = [*RULES, {"users": ["alice"], "repositories": ["w?/**"], "actions": ["*"]}]
    h = WriteHarness(tmp_path, "token", auth={"rules": rules})
    tokens = {side: _token(h, "alice", f"repository:{side}/src:pull,push "
                                       f"repository:{side}/dst:pull,push")
              for side in SIDES}
    for side in SIDES:
        _twins_one(h, f"{side}/src", {"Authorization": f"Bearer {tokens[side]}"})
    # One token per twin: the header differs by side, so each side sends its own.
    for side in SIDES:
        h.writes.enabled = side == SIDES[1]
        r = h.client.post(f"/v2/{side}/dst/blobs/uploads/?mount={CONFIG_DIGEST}"
                          f"&from={side}/src",
                          headers={"Authorization": f"Bearer {tokens[side]}"})
        assert r.status_code == 201, r.get_data()
        r = h.client.put(f"/v2/{side}/dst/manifests/v1", data=_manifest(), headers={
            "Content-Type": DOCKER_MANIFEST, "Authorization": f"Bearer {tokens[side]}"})
        assert r.status_code == 201, r.get_data()
    h.writes.enabled = True
    # Through the fast route (no Flask call) with the token's user as the actor.
    calls = h.write_flask_calls
    r = h.client.put("/v2/wb/dst/manifests/v2", data=_manifest(), headers={
        "Content-Type": DOCKER_MANIFEST, "Authorization": f"Bearer {tokens['wb']}"})
    assert r.status_code == 201 and h.write_flask_calls == calls
    # A token for another repository, none, Basic in token mode: Flask's 401.
    other = _token(h, "alice", "repository:users/alice/x:pull,push")
    for headers in ({"Authorization": f"Bearer {other}"}, {}, _basic("alice")):
        h.pair("PUT", "/v2/{p}/dst/manifests/v3", _manifest(),
               {"Content-Type": DOCKER_MANIFEST, **headers}, fast=False, status=401,
               same=False)


def _twins_one(h: WriteHarness, repo: str, headers: dict[str, str]) -> None:
    r = h.client.post(f"/v2/{repo}/blobs/uploads/?digest={CONFIG_DIGEST}", data=CONFIG,
                      headers=headers)
    assert r.status_code == 201, r.get_data()


def test_robots_go_to_flask(tmp_path: Path) -> None:
    rules = [*RULES, {"groups": ["robots"], "repositories": ["**"], "actions": ["*"]}]
    h = WriteHarness(tmp_path, "basic", auth={"rules": rules})
    _, secret = h.app.extensions["ociregistry.auth"].robots.create(
        "ci", parse_scope(["w?/**:pull,push"]))
    raw = base64.b64encode(f"robot$ci:{secret}".encode()).decode()
    robot = {"Authorization": f"Basic {raw}"}
    _twins(h, "src", headers=robot)
    mount = f"/v2/{{p}}/dst/blobs/uploads/?mount={CONFIG_DIGEST}&from={{p}}/src"
    h.pair("POST", mount, headers=robot, fast=False, status=201)
    h.pair("PUT", "/v2/{p}/dst/manifests/v1", _manifest(),
           {"Content-Type": DOCKER_MANIFEST, **robot}, fast=False, status=201)


# -- switched off -------------------------------------------------------------------
def test_switched_off_rate_limited_and_mirrored(tmp_path: Path) -> None:
    put = {"Content-Type": DOCKER_MANIFEST}
    for name, settings in (("off", {"http": {"fast_writes": False}}),
                           ("limited", {"rate_limit": {"per_address": 1000}}),
                           ("default", {"mirror": {"upstreams": [{
                               "name": "hub", "url": "http://127.0.0.1:9",
                               "default": True}]}})):
        h = WriteHarness(tmp_path / name, None, **settings)
        _twins(h, "app")
        h.pair("PUT", "/v2/{p}/app/manifests/v1", _manifest(), put, fast=False, status=201)
    # Names under a mirror's prefix are the mirror's (Flask's route refuses pushes there).
    h = WriteHarness(tmp_path / "prefix", None, mirror={"upstreams": [{
        "name": "hub", "url": "http://127.0.0.1:9"}]})
    _twins(h, "app")
    h.pair("PUT", "/v2/{p}/app/manifests/v1", _manifest(), put, fast=True, status=201)
    r = h.send(True, "PUT", "/v2/hub/library/x/manifests/v1", _manifest(), put)
    assert r["flask"]


# -- upload sessions: the body-less POST and PUT ------------------------------------
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
    for name, settings in (("off", {"http": {"fast_writes": False}}),
                           ("limited", {"rate_limit": {"per_address": 1000}}),
                           ("default", {"mirror": {"upstreams": [{
                               "name": "hub", "url": "http://127.0.0.1:9",
                               "default": True}]}})):
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
