"""Failed password checks are limited per client address and per user name.

In-process (Flask test client) for the API's answers; the same limits across
worker processes and instances are in test_ui_sessions_server.py and
tests/cluster/test_cluster_ui_sessions.py.
"""

from __future__ import annotations

from ociregistry.metadata import rate_limit_queries
from tests.auth.support import basic


def codes(response) -> list[str]:
    return [e["code"] for e in response.get_json()["errors"]]


def test_basic_guessing_is_refused_with_the_oci_envelope(make_registry):
    c = make_registry("basic", rate_limit={"auth_failures": 3})
    assert [c.get("/v2/", headers=basic("alice", f"guess{i}")).status_code
            for i in range(3)] == [401, 401, 401]
    for headers in (basic("alice", "guess"), basic("alice"), basic("bob", "guess")):
        r = c.get("/v2/", headers=headers)
        assert r.status_code == 429 and codes(r) == ["TOOMANYREQUESTS"]
        assert int(r.headers["Retry-After"]) >= 1
    # another address has its own count
    r = c.get("/v2/", headers=basic("alice"), environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert r.status_code == 200


def test_guesses_at_one_user_from_many_addresses(make_registry):
    c = make_registry("basic", rate_limit={"auth_failures": 0, "auth_failures_per_user": 2})
    for i in range(2):
        r = c.get("/v2/", headers=basic("bob", "guess"),
                  environ_base={"REMOTE_ADDR": f"10.0.1.{i}"})
        assert r.status_code == 401
    r = c.get("/v2/", headers=basic("bob"), environ_base={"REMOTE_ADDR": "10.0.1.9"})
    assert r.status_code == 429
    assert c.get("/v2/", headers=basic("alice")).status_code == 200  # other users are fine


def test_the_token_endpoint_counts_failures_too(make_registry):
    c = make_registry("token", rate_limit={"auth_failures": 2})
    url = "/auth/token?service=test-registry"
    assert [c.get(url, headers=basic("alice", "x")).status_code for _ in range(2)] == [401, 401]
    assert c.get(url, headers=basic("alice")).status_code == 429
    r = c.post("/auth/token", data={"grant_type": "password", "client_id": "t",
                                    "username": "alice", "password": "alice-secret"})
    assert r.status_code == 429


def test_a_right_password_gives_its_attempt_back(make_registry):
    c = make_registry("basic", rate_limit={"auth_failures": 3})
    for _ in range(2):
        assert c.get("/v2/", headers=basic("carol", "typo")).status_code == 401
    for _ in range(5):  # successes never add up, however many
        c.auth.htpasswd._verified.clear()  # as in a process that has not seen carol yet
        assert c.get("/v2/", headers=basic("carol")).status_code == 200
    assert c.get("/v2/", headers=basic("carol", "typo")).status_code == 401  # the 3rd failure
    c.auth.htpasswd._verified.clear()
    assert c.get("/v2/", headers=basic("carol")).status_code == 429


def test_known_good_credentials_add_nothing_to_the_index(make_registry, monkeypatch):
    c = make_registry("basic")  # the default limits are on
    calls = []
    real = rate_limit_queries.count_failure
    monkeypatch.setattr(rate_limit_queries, "count_failure",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    assert c.get("/v2/", headers=basic("alice")).status_code == 200  # bcrypt: one reservation
    for _ in range(20):  # a push's many requests: the success cache answers
        assert c.get("/v2/", headers=basic("alice")).status_code == 200
    assert len(calls) == 1


def test_ui_sign_in_guessing_gets_a_page_with_retry_after(make_registry):
    c = make_registry("basic", rate_limit={"auth_failures": 2})
    page = c.get("/ui/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"username": "alice", "password": "guess", "csrf_token": token}
    assert [c.post("/ui/login", data=form).status_code for _ in range(2)] == [401, 401]
    r = c.post("/ui/login", data={**form, "password": "alice-secret"})
    assert r.status_code == 429 and r.mimetype == "text/html"
    assert "Too many attempts" in r.get_data(as_text=True)
    assert int(r.headers["Retry-After"]) >= 1
