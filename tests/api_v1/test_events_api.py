"""/api/v1/events on a live registry with authentication: admins only; endpoints added,
edited, tested, disabled and deleted at run time; secrets never shown back; bad input
is an RFC 9457 problem, never a 500."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.api_v1.conftest import Live
from tests.events.receivers import Receiver, verify

ADMIN = ("admin", "admin-pw")
PROBLEM = "application/problem+json"
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # 24 bytes


def api(live: Live, http: requests.Session, method: str, path: str, who: Any = ADMIN,
        **kwargs: Any) -> requests.Response:
    return http.request(method, live.url + "/api/v1" + path, auth=who, timeout=60, **kwargs)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.mark.parametrize(("who", "status"), [("anonymous", 401), ("puller", 403),
                                             ("pusher", 403), ("robot", 403)])
def test_only_admins_manage_events(live, http, who, status):
    for method, path in (("GET", "/events"), ("GET", "/events/endpoints"),
                         ("POST", "/events/endpoints")):
        r = api(live, http, method, path, who=live.auth(who), json={"name": "x", "url": "http://x"})
        assert r.status_code == status and r.headers["Content-Type"] == PROBLEM


def test_an_endpoint_added_at_run_time_receives_signed_events(live, http, receiver):
    r = api(live, http, "POST", "/events/endpoints", json={
        "name": "runtime", "url": receiver.url, "repositories": ["team/**"],
        "headers": {"Authorization": "Bearer s3cret-token"}})
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["secret"]  # generated, shown this once
    assert secret.startswith("whsec_") and created["headers"] == {"Authorization": "***"}
    listed = api(live, http, "GET", "/events/endpoints").json()["items"]
    shown = next(e for e in listed if e["name"] == "runtime")
    assert "secret" not in shown and "s3cret" not in str(listed) and secret not in str(listed)
    assert shown["secret_hint"] == secret[:10] + "…"

    tested = api(live, http, "POST", "/events/endpoints/runtime/test").json()
    assert tested["delivered"] is True and tested["status_code"] == 204
    request = receiver.requests[0]
    assert verify(secret, request["headers"], request["body"])
    assert request["headers"]["authorization"] == "Bearer s3cret-token"

    # A pull (this package's registry is shared: nothing here changes its content).
    puller = ("puller", "puller-pw")
    r = http.get(f"{live.url}/v2/team/app/manifests/v1.0", auth=puller, timeout=60,
                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text
    bodies = receiver.wait_for(lambda b: any(e["action"] == "manifest.pulled" for e in b))
    pushed = next(b for b in bodies if b["action"] == "manifest.pulled")
    assert pushed["actor"] == {"kind": "user", "name": "puller", "address": "127.0.0.1"}
    assert pushed["tags"] == ["v1.0"] and pushed["details"]["count"] == 1

    log = api(live, http, "GET", "/events/endpoints/runtime/deliveries").json()["items"]
    assert {e["outcome"] for e in log} >= {"delivered", "test"}
    entry = next(e for e in log if e["outcome"] == "delivered")
    assert entry["status_code"] == 204 and entry["latency_ms"] >= 0 and entry["event_id"]

    # Redeliver one event, then everything since a time: both arrive again, same id.
    count = len(receiver.requests)
    r = api(live, http, "POST", "/events/endpoints/runtime/redeliver",
            json={"event_id": pushed["id"]})
    assert r.status_code == 200 and r.json() == {"queued": 1}
    again = receiver.wait_for(lambda b: len(b) > count)[count:]
    assert again[0]["id"] == pushed["id"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    r = api(live, http, "POST", "/events/endpoints/runtime/redeliver", json={"since": since})
    assert r.status_code == 200 and r.json()["queued"] >= 1

    # Disable: nothing more is sent; enable: the backlog follows.
    r = api(live, http, "PATCH", "/events/endpoints/runtime", json={"enabled": False})
    assert r.json()["enabled"] is False and r.json()["disabled_reason"] == "disabled by an admin"
    r = api(live, http, "PATCH", "/events/endpoints/runtime",
            json={"actions": ["manifest.deleted"], "format": "cloudevents"})
    assert r.status_code == 200 and r.json()["format"] == "cloudevents"
    assert api(live, http, "DELETE", "/events/endpoints/runtime").status_code == 204
    assert api(live, http, "GET", "/events/endpoints/runtime").status_code == 404

    events = api(live, http, "GET", "/events", params={"repository": "team/app"}).json()
    assert "manifest.pulled" in [e["action"] for e in events["items"]]


@pytest.mark.parametrize("body", [
    {"name": "Bad Name", "url": "http://127.0.0.1:9/"},
    {"name": "ok", "url": "ftp://127.0.0.1/"},
    {"name": "ok", "url": "http://127.0.0.1/", "format": "xml"},
    {"name": "ok", "url": "http://127.0.0.1/", "secret": "whsec_not base64!"},
    {"name": "ok", "url": "http://127.0.0.1/", "secret": "plain-secret-value"},
    {"name": "ok", "url": "http://127.0.0.1/", "headers": ["a"]},
    {"name": "ok", "url": "http://127.0.0.1/", "headers": {"Bad Header": "x"}},
    {"name": "ok", "url": "http://127.0.0.1/", "headers": {"webhook-id": "x"}},
    {"name": "ok", "url": "http://127.0.0.1/", "headers": {"X-A": "a\r\nb"}},
    {"name": "ok", "url": "http://127.0.0.1/", "headers": {"X-A": 5}},
    {"name": "ok", "url": "http://127.0.0.1/", "actions": "manifest.*"},
    {"name": "ok", "url": "http://127.0.0.1/", "actions": [""]},
    {"name": "ok", "url": "http://127.0.0.1/", "timeout_seconds": 0},
    {"name": "ok", "url": "http://127.0.0.1/", "timeout_seconds": True},
    {"name": "ok", "url": "http://127.0.0.1/", "batch_max_events": -1},
    {"name": "ok", "url": "http://127.0.0.1/", "batch_max_events": 1001},
    {"name": "ok", "url": "http://127.0.0.1/", "batch_max_events": True},
    {"name": "ok", "url": "http://127.0.0.1/", "batch_max_events": 2.5},
    {"name": "ok", "url": "http://127.0.0.1/", "ca_pem": "not a certificate"},
    {"name": "ok", "url": "http://127.0.0.1/", "surprise": 1},
    {"url": "http://127.0.0.1/"},
    [],
])
def test_bad_endpoint_input_is_a_problem(live, http, body):
    r = api(live, http, "POST", "/events/endpoints", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == PROBLEM
    assert r.json()["code"] in ("invalid_parameter", "bad_request")


def test_other_failures_are_problems(live, http):
    r = api(live, http, "POST", "/events/endpoints",
            json={"name": "twice", "url": "http://127.0.0.1:9/"})
    assert r.status_code == 201
    r = api(live, http, "POST", "/events/endpoints",
            json={"name": "twice", "url": "http://127.0.0.1:9/"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    for body in ({}, {"event_id": "x", "since": "2026-01-01T00:00:00Z"},
                 {"since": "yesterday at noon"}):
        r = api(live, http, "POST", "/events/endpoints/twice/redeliver", json=body)
        assert r.status_code == 400 and r.headers["Content-Type"] == PROBLEM, body
    r = api(live, http, "POST", "/events/endpoints/twice/redeliver", json={"event_id": "nope"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = api(live, http, "POST", "/events/endpoints", data="{", headers={
        "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    for method, path in (("GET", "/events/endpoints/missing"),
                         ("PATCH", "/events/endpoints/missing"),
                         ("DELETE", "/events/endpoints/missing"),
                         ("POST", "/events/endpoints/missing/test"),
                         ("GET", "/events/endpoints/missing/deliveries")):
        r = api(live, http, method, path, json={} if method == "PATCH" else None)
        assert r.status_code == 404 and r.headers["Content-Type"] == PROBLEM, path
    r = api(live, http, "GET", "/events", params={"limit": "0"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_parameter"
    r = api(live, http, "POST", "/events/endpoints/twice/test")
    assert r.status_code == 200 and r.json()["delivered"] is False and r.json()["error"]
    assert api(live, http, "DELETE", "/events/endpoints/twice").status_code == 204
