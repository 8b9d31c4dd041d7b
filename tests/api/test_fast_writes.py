"""The fast write route (web/fast_writes.py) answers and writes exactly what Flask does.

In process, one app and one index: every request of a matrix (mounts plain and
percent-encoded, from a repository without the blob, without ``from``, with other
parameters or a body; manifest PUTs to a new repository, the same tag again, a moved
tag, by digest, with a subject, with ``?tag=``, a missing blob, bad JSON, a size lie,
a wrong digest, an empty body, too large, an immutable tag (the body-less upload
requests: test_fast_write_uploads.py); no auth, htpasswd and tokens, refusals,
robots; switched off, rate limits, mirror names) is sent to two
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
from tests.api.fast_reads_support import OCI_CONFIG, _digest
from tests.api.fast_writes_support import (
    FLASK_SETTINGS,
    SIDES,
    WriteHarness,
    _basic,
    _token,
)
from tests.auth.support import RULES
from tests.helpers import DOCKER_MANIFEST, OCI_MANIFEST

CONFIG = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
CONFIG_DIGEST = _digest(CONFIG)


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
    for name, settings in FLASK_SETTINGS:
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
