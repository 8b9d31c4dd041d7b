"""The fast read route (web/fast_reads.py) answers exactly what Flask does.

In process, one app and one index: every request of a matrix (manifests by tag and
digest, blobs, HEAD and GET, auth none / htpasswd / token, anonymous and
authenticated, robots, absent tags and repositories, odd Accept lists, a deleted
manifest, a moved tag, refusals and bad credentials, Range and If-*, a mirror's
names, rate limits) is sent twice through the whole WSGI chain, once with the fast route
on and once with it switched off (Flask answers). Equal: status, headers (names,
values, order), body, the access-log record (all fields but the duration), the
Prometheus samples each request adds, and the pull records and pull events of a
GET with the actor they were made under. Each case also says which side answered,
so a fast route that quietly always fell through fails here.
Through gunicorn: tests/api/test_fast_reads_server.py. The harness:
tests/api/fast_reads_support.py.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from ociregistry.auth.robots import parse_scope
from ociregistry.web.fast_reads import MANIFEST_ROUTE
from tests.api.fast_reads_support import OCI_CONFIG, SERVICE, Harness, _digest
from tests.auth.support import PASSWORDS, RULES
from tests.helpers import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST


# -- no authentication --------------------------------------------------------------
@pytest.fixture
def open_registry(tmp_path: Path) -> Harness:
    return Harness(tmp_path, None)


def test_metric_names_are_the_ones_measured(open_registry: Harness) -> None:
    h = open_registry
    body, digest = h.image("fast/names", "v1")
    answer = h.both("GET", "/v2/fast/names/manifests/v1", fast=True)
    names = {name for name, _ in answer["metrics"]}
    assert {"registry_http_requests_total", "registry_http_sent_bytes_total",
            "registry_http_request_duration_seconds_count"} <= names, names
    assert any(dict(labels).get("route") == MANIFEST_ROUTE for _, labels in answer["metrics"])


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_tag_and_digest_without_auth(open_registry: Harness, method: str) -> None:
    h = open_registry
    body, digest = h.image("fast/app", "latest")
    for ref in ("latest", digest):
        answer = h.both(method, f"/v2/fast/app/manifests/{ref}", fast=True)
        assert answer["body"] == (body if method == "GET" else b"")
        h.both(method, f"/v2/fast/app/manifests/{ref}", {"Accept": OCI_MANIFEST}, fast=True)
        # Several Accept values with parameters, as docker sends them.
        h.both(method, f"/v2/fast/app/manifests/{ref}",
               {"Accept": f"{DOCKER_MANIFEST}; q=0.9, {OCI_INDEX},{OCI_MANIFEST};q=0.5"},
               fast=True)
        # A media type the client does not list: the registry answers what it has.
        h.both(method, f"/v2/fast/app/manifests/{ref}", {"Accept": "text/plain"}, fast=True)
    # A random request id, when the client sends none (same format both ways).
    r = h.client.open("/v2/fast/app/manifests/latest", method=method)
    assert r.status_code == 200 and len(r.headers["X-Request-ID"]) == 32
    assert h.client.open("/v2/fast/app/manifests/latest", method=method,
                         headers={"X-Request-ID": "bad id!"}).headers["X-Request-ID"] != "bad id!"


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_subject_index_fallback_and_misses(open_registry: Harness, method: str) -> None:
    h = open_registry
    body, digest = h.image("fast/sub", "base")
    # A manifest with a subject: OCI-Subject.
    _, child = h.image("fast/sub", "sig", extra={
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body)}})
    answer = h.both(method, "/v2/fast/sub/manifests/sig", fast=True)
    assert ("OCI-Subject", digest) in answer["headers"]
    # An index: a client that can't read one gets the default platform's manifest.
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    index_digest = h.manifest("fast/sub", "multi", index, OCI_INDEX)
    answer = h.both(method, "/v2/fast/sub/manifests/multi", {"Accept": OCI_MANIFEST}, fast=True)
    assert ("Docker-Content-Digest", digest) in answer["headers"]
    answer = h.both(method, "/v2/fast/sub/manifests/multi", {"Accept": OCI_INDEX}, fast=True)
    assert ("Docker-Content-Digest", index_digest) in answer["headers"]
    h.both(method, "/v2/fast/sub/manifests/multi", {"Accept": DOCKER_MANIFEST_LIST}, fast=True)
    # Misses and bad requests: Flask answers (404, 400 envelope).
    h.both(method, "/v2/fast/sub/manifests/absent", fast=False, status=404)
    h.both(method, "/v2/fast/nothing-here/manifests/latest", fast=False, status=404)
    h.both(method, "/v2/fast/sub/manifests/" + "sha256:" + "0" * 64, fast=False, status=404)
    h.both(method, "/v2/fast/sub/manifests/sha256:nothex", fast=False, status=400)
    h.both(method, "/v2/Fast/Upper/manifests/latest", fast=False, status=400)
    h.both(method, "/v2/fast/sub/manifests/bad%20tag", fast=False, status=404)


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_deleted_and_moved(open_registry: Harness, method: str) -> None:
    h = open_registry
    first, first_digest = h.image("fast/move", "t")
    h.both(method, "/v2/fast/move/manifests/t", fast=True)
    second, second_digest = h.image("fast/move", "t")  # the tag moves
    answer = h.both(method, "/v2/fast/move/manifests/t", fast=True)
    assert ("Docker-Content-Digest", second_digest) in answer["headers"]
    assert h.client.delete(f"/v2/fast/move/manifests/{second_digest}").status_code == 202
    h.both(method, "/v2/fast/move/manifests/t", fast=False, status=404)
    h.both(method, f"/v2/fast/move/manifests/{second_digest}", fast=False, status=404)
    h.both(method, f"/v2/fast/move/manifests/{first_digest}", fast=True)


def test_unusual_requests_go_to_flask(open_registry: Harness) -> None:
    h = open_registry
    h.image("fast/odd", "v")
    path = "/v2/fast/odd/manifests/v"
    h.both("GET", path + "?x=1", fast=False)
    h.both("GET", path, {"If-None-Match": '"sha256:x"'}, fast=False)
    h.both("GET", path, {"Range": "bytes=0-3"}, fast=False)
    h.both("GET", path, {"Cookie": "a=b"}, fast=False)
    h.both("GET", "/v2/fast//odd/manifests/v", fast=False, status=400)
    h.both("HEAD", "/v2/fast/odd/manifests/v/", fast=False, status=404)
    h.both("GET", "/v2/fast/odd/referrers/" + "sha256:" + "0" * 64, fast=False)
    # The base endpoint and tags lists: tests/api/test_fast_listings.py.
    h.both("GET", "/v2/fast/odd/tags/list", fast=True)


# -- htpasswd and tokens ------------------------------------------------------------
def _basic(user: str, password: str | None = None) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_basic_auth(tmp_path: Path, method: str) -> None:
    h = Harness(tmp_path, "basic")
    _, digest = h.image("team-a/app", "v1", user="alice")
    h.image("public/app", "v1", user="carol")
    team, public = "/v2/team-a/app/manifests/v1", "/v2/public/app/manifests/v1"
    # Anonymous: public/** may be pulled; team-a/** is challenged (Flask's 401).
    h.both(method, public, fast=True)
    h.both(method, public, {"Authorization": "Basic Og=="}, fast=True)  # the empty pair
    h.both(method, team, fast=False, status=401)
    # Verified credentials (alice pushed a moment ago): fast, with the user logged.
    answer = h.both(method, team, _basic("alice"), fast=True)
    assert answer["log"][1]["user"] == "alice"
    h.both(method, f"/v2/team-a/app/manifests/{digest}", _basic("alice"), fast=True)
    # bob may pull team-a: his first request checks his password (Flask), then fast.
    assert h._once(True, method, team, _basic("bob"))["flask"]
    h.both(method, team, _basic("bob"), fast=True)
    # Wrong password, unknown user, malformed: Flask's 401.
    h.both(method, team, _basic("alice", "wrong"), fast=False, status=401)
    h.both(method, team, _basic("nobody", "x"), fast=False, status=401)
    h.both(method, team, {"Authorization": "Basic !!!"}, fast=False, status=401)
    h.both(method, team, {"Authorization": "Bearer abc"}, fast=False, status=401)
    # carol (verified: she pushed public/app) may not pull team-a: Flask's 403.
    h.both(method, public, _basic("carol"), fast=True)
    h.both(method, team, _basic("carol"), fast=False, status=403)


def _token(h: Harness, user: str | None, scope: str) -> str:
    headers = _basic(user) if user else {}
    r = h.client.get("/auth/token", query_string={"service": SERVICE, "scope": scope},
                     headers=headers)
    assert r.status_code == 200, r.get_data()
    return r.get_json()["token"]


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_token_auth(tmp_path: Path, method: str) -> None:
    h = Harness(tmp_path, "token")
    pushing = _token(h, "alice", "repository:team-a/app:pull,push")
    public_push = _token(h, "carol", "repository:public/app:pull,push")
    for repo, tok in (("team-a/app", pushing), ("public/app", public_push)):
        config = json.dumps({"os": "linux"}).encode()
        r = h.client.post(f"/v2/{repo}/blobs/uploads/?digest={_digest(config)}", data=config,
                          headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 201, r.get_data()
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                           "config": {"mediaType": OCI_CONFIG, "digest": _digest(config),
                                      "size": len(config)}}).encode()
        r = h.client.put(f"/v2/{repo}/manifests/v1", data=body, headers={
            "Content-Type": OCI_MANIFEST, "Authorization": f"Bearer {tok}"})
        assert r.status_code == 201, r.get_data()
    team, public = "/v2/team-a/app/manifests/v1", "/v2/public/app/manifests/v1"
    pull = _token(h, "alice", "repository:team-a/app:pull")
    answer = h.both(method, team, {"Authorization": f"Bearer {pull}"}, fast=True)
    assert answer["log"][1]["user"] == "alice"
    anonymous = _token(h, None, "repository:public/app:pull")
    h.both(method, public, {"Authorization": f"Bearer {anonymous}"}, fast=True)
    # No token: the challenge; a token without the scope; a forged one; Basic in token mode.
    h.both(method, team, fast=False, status=401)
    h.both(method, public, fast=True)  # anonymous pull of public/** without a token
    other = _token(h, "alice", "repository:team-a/other:pull")
    h.both(method, team, {"Authorization": f"Bearer {other}"}, fast=False, status=401)
    h.both(method, team, {"Authorization": f"Bearer {pull[:-4]}AAAA"}, fast=False, status=401)
    h.both(method, team, _basic("alice"), fast=False, status=401)
    # Blob misses with a push token (a push's first look at a layer) and a pull token, in
    # an existing and a new repository; without the scope: Flask's challenge.
    unknown = "sha256:" + "4" * 64
    new_push = _token(h, "alice", "repository:team-a/new:pull,push")
    for repo, tok in (("team-a/app", pushing), ("team-a/app", pull), ("team-a/new", new_push)):
        answer = h.both(method, f"/v2/{repo}/blobs/{unknown}",
                        {"Authorization": f"Bearer {tok}"}, fast=True, status=404)
        assert answer["log"][1]["user"] == "alice"
    h.both(method, f"/v2/team-a/new/blobs/{unknown}", {"Authorization": f"Bearer {pull}"},
           fast=False, status=401)
    h.both(method, f"/v2/public/app/blobs/{unknown}", fast=True, status=404)


def test_robots_go_to_flask(tmp_path: Path) -> None:
    """A robot's credentials are checked (and their use recorded) by Flask's hook only."""
    rules = [*RULES, {"groups": ["robots"], "repositories": ["**"], "actions": ["pull"]}]
    h = Harness(tmp_path, "basic", auth={"rules": rules})
    h.image("team-a/app", "v1", user="alice")
    _, secret = h.app.extensions["ociregistry.auth"].robots.create(
        "ci", parse_scope(["team-a/**:pull"]))
    raw = base64.b64encode(f"robot$ci:{secret}".encode()).decode()
    robot = {"Authorization": f"Basic {raw}"}
    for method in ("HEAD", "GET"):
        h.both(method, "/v2/team-a/app/manifests/v1", robot, fast=False)


def test_plain_client_headers_take_the_fast_route(open_registry: Harness) -> None:
    """What requests, docker and containerd send (the read-consistency tests' reads)."""
    h = open_registry
    h.image("fast/client", "v1")
    for headers in (
        {"User-Agent": "python-requests/2.32", "Accept-Encoding": "gzip, deflate",
         "Accept": "*/*", "Connection": "keep-alive"},
        {"User-Agent": "docker/27.0", "Accept": ", ".join([OCI_INDEX, OCI_MANIFEST,
                                                           DOCKER_MANIFEST_LIST,
                                                           DOCKER_MANIFEST])},
        {"Content-Length": "0"},
    ):
        for method in ("HEAD", "GET"):
            h.both(method, "/v2/fast/client/manifests/v1", headers, fast=True)


def test_switched_off_and_rate_limited(tmp_path: Path) -> None:
    off = Harness(tmp_path / "off", None, http={"fast_reads": False})
    off.image("fast/off", "v1")
    off.both("GET", "/v2/fast/off/manifests/v1", fast=False)
    # A rate limit's check writes to the index: every request goes through Flask's hook.
    limited = Harness(tmp_path / "limited", None, rate_limit={"per_address": 1000})
    limited.image("fast/limited", "v1")
    for method in ("HEAD", "GET"):
        limited.both(method, "/v2/fast/limited/manifests/v1", fast=False)


def test_mirrored_names_go_to_flask(tmp_path: Path) -> None:
    upstream = {"name": "hub", "url": "http://127.0.0.1:9"}  # nothing listens there
    h = Harness(tmp_path / "prefix", None, mirror={"upstreams": [upstream]})
    h.image("fast/local", "v1")
    h.both("GET", "/v2/fast/local/manifests/v1", fast=True)  # not under the prefix
    assert h._once(True, "HEAD", "/v2/hub/library/alpine/manifests/v1", {})["flask"]
    unknown = "sha256:" + "5" * 64
    h.both("HEAD", f"/v2/fast/local/blobs/{unknown}", fast=True, status=404)
    # A miss under the prefix may be fetched from the upstream: Flask's.
    assert h._once(True, "HEAD", f"/v2/hub/library/alpine/blobs/{unknown}", {})["flask"]
    # A default upstream may take any name that is not local: Flask decides them all.
    default = Harness(tmp_path / "default", None,
                      mirror={"upstreams": [{**upstream, "default": True}]})
    default.image("fast/local", "v1")
    default.both("GET", "/v2/fast/local/manifests/v1", fast=False)
    assert default._once(True, "HEAD", f"/v2/fast/local/blobs/{unknown}", {})["flask"]


# -- blobs --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_blobs(open_registry: Harness, method: str) -> None:
    h = open_registry
    data = os.urandom(3000)
    digest = h.blob("fast/blobs", data)["digest"]
    answer = h.both(method, f"/v2/fast/blobs/blobs/{digest}", fast=True)
    assert answer["body"] == (data if method == "GET" else b"")
    assert ("Docker-Content-Digest", digest) in answer["headers"]
    h.both(method, f"/v2/fast/blobs/blobs/{digest}", {"Accept": "*/*"}, fast=True)
    # A miss (a push's first look at each layer): Flask's BLOB_UNKNOWN, answered fast,
    # whether the repository exists or not (the same answer either way).
    unknown = "sha256:" + "1" * 64
    answer = h.both(method, f"/v2/fast/blobs/blobs/{unknown}", fast=True, status=404)
    if method == "GET":
        assert json.loads(answer["body"])["errors"][0]["code"] == "BLOB_UNKNOWN"
    h.both(method, f"/v2/fast/other/blobs/{digest}", fast=True, status=404)
    h.both(method, f"/v2/fast/never-pushed/blobs/{unknown}", fast=True, status=404)
    h.both(method, f"/v2/fast/blobs/blobs/sha512:{'2' * 128}", fast=True, status=404)
    # Invalid digests and names, unknown algorithms: Flask's errors.
    h.both(method, "/v2/fast/blobs/blobs/sha256:nothex", fast=False, status=400)
    h.both(method, "/v2/fast/blobs/blobs/md5:" + "1" * 32, fast=False, status=400)
    h.both(method, f"/v2/Fast/Upper/blobs/{unknown}", fast=False, status=400)
    h.both(method, f"/v2/fast/blobs/blobs/{unknown}", {"Range": "bytes=0-9"}, fast=False,
           status=404)
    # Range and conditional requests: Flask's (206, 304).
    h.both(method, f"/v2/fast/blobs/blobs/{digest}", {"Range": "bytes=0-9"}, fast=False,
           status=206)
    h.both(method, f"/v2/fast/blobs/blobs/{digest}", {"If-None-Match": f'"{digest}"'},
           fast=False, status=304)
    # Upload endpoints are never blobs.
    assert h._once(True, method, "/v2/fast/blobs/blobs/uploads/", {})["flask"]
    # The file gone from storage: Flask's BLOB_UNKNOWN.
    path = h.runtime.registry.blob("fast/blobs", digest).path
    os.unlink(path)
    h.both(method, f"/v2/fast/blobs/blobs/{digest}", fast=False, status=404)


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_blobs_with_basic_auth(tmp_path: Path, method: str) -> None:
    h = Harness(tmp_path, "basic")
    data = os.urandom(100)
    digest = h.blob("team-a/app", data, user="alice")["digest"]
    path = f"/v2/team-a/app/blobs/{digest}"
    h.both(method, path, fast=False, status=401)
    answer = h.both(method, path, _basic("alice"), fast=True)
    assert answer["log"][1]["user"] == "alice"
    h.both(method, path, _basic("alice", "wrong"), fast=False, status=401)
    # Misses (a push's blob HEAD): in an existing and a new repository, by a verified
    # user; refused or challenged ones stay Flask's.
    unknown = "sha256:" + "3" * 64
    for repo in ("team-a/app", "team-a/new"):
        answer = h.both(method, f"/v2/{repo}/blobs/{unknown}", _basic("alice"), fast=True,
                        status=404)
        assert answer["log"][1]["user"] == "alice"
        h.both(method, f"/v2/{repo}/blobs/{unknown}", fast=False, status=401)
    h.both(method, f"/v2/public/app/blobs/{unknown}", fast=True, status=404)  # anonymous
    h.both(method, f"/v2/team-a/new/blobs/{unknown}", _basic("carol"), fast=False, status=403)


def test_behind_a_trusted_proxy(tmp_path: Path) -> None:
    """The client behind a trusted proxy (web/proxies.py runs first): the same address
    logged by both routes; from an untrusted peer the header is ignored by both."""
    h = Harness(tmp_path, None, http={"trusted_proxies": ["192.0.2.0/24"]})
    h.image("fast/proxied", "v1")
    answer = h.both("GET", "/v2/fast/proxied/manifests/v1",
                    {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"},
                    fast=True)
    assert answer["log"][1]["client"] == "203.0.113.5"
    other = Harness(tmp_path / "untrusted", None)
    other.image("fast/proxied", "v1")
    answer = other.both("HEAD", "/v2/fast/proxied/manifests/v1",
                        {"X-Forwarded-For": "203.0.113.5"}, fast=True)
    assert answer["log"][1]["client"] == "192.0.2.7"


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_docker_media_types(open_registry: Harness, method: str) -> None:
    """Docker schema 2 and its manifest list: an old client that only takes a manifest
    gets the default platform's (the core's fallback), through both routes alike."""
    h = open_registry
    config = h.blob("fast/docker", json.dumps({"os": "linux", "architecture": "amd64"}).encode())
    config["mediaType"] = "application/vnd.docker.container.image.v1+json"
    image = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config,
                        "layers": []}).encode()
    image_digest = h.manifest("fast/docker", "image", image, DOCKER_MANIFEST)
    listed = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": image_digest, "size": len(image),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    list_digest = h.manifest("fast/docker", "list", listed, DOCKER_MANIFEST_LIST)
    answer = h.both(method, "/v2/fast/docker/manifests/list", {"Accept": DOCKER_MANIFEST},
                    fast=True)
    assert ("Docker-Content-Digest", image_digest) in answer["headers"]
    answer = h.both(method, "/v2/fast/docker/manifests/list",
                    {"Accept": f"{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}"}, fast=True)
    assert ("Content-Type", DOCKER_MANIFEST_LIST) in answer["headers"]
    assert ("Docker-Content-Digest", list_digest) in answer["headers"]
    h.both(method, f"/v2/fast/docker/manifests/{image_digest}", {"Accept": DOCKER_MANIFEST},
           fast=True)
