"""Two instances sharing PostgreSQL: a UI session ended on one is ended on the
other, and rate limits count requests and failed sign-ins across instances."""

from __future__ import annotations

import base64

import requests

from tests.auth.support import GROUPS, PASSWORDS, RULES, write_htpasswd
from tests.auth.test_ui_sessions_server import gc_page, sign_in, sign_out


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _auth(tmp_path) -> dict:
    htpasswd = write_htpasswd(tmp_path / "htpasswd")  # the same file for both instances
    return {"htpasswd": str(htpasswd), "rules": RULES, "groups": GROUPS}


def test_sign_out_on_one_instance_ends_the_session_on_the_other(make_cluster, tmp_path):
    cluster = make_cluster(storage="filesystem", size=2, settings={"auth": _auth(tmp_path)})
    one, two = (inst.url for inst in cluster.instances)
    cookie = sign_in(one, "root")
    assert gc_page(two, cookie).status_code == 200  # the session is known on both
    sign_out(two, cookie)
    for url in (one, two):
        r = gc_page(url, cookie)
        assert r.status_code == 302 and r.headers["Location"].startswith("/ui/login"), url


def test_rate_limits_count_across_instances(make_cluster, tmp_path):
    cluster = make_cluster(storage="filesystem", size=2, settings={
        "auth": _auth(tmp_path),
        "rate_limit": {"auth_failures": 3, "per_user": 0.001, "burst": 4},
    })
    one, two = (inst.url for inst in cluster.instances)
    # Requests per user: a bucket of 4, drawn from both instances.
    statuses = [requests.get(url + "/v2/", headers=_basic("alice", PASSWORDS["alice"])).status_code
                for url in (one, two, one, two, one, two)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    # Failed Basic checks from one address: 3, wherever they land; then 429 everywhere,
    # before any password is looked at.
    wrong = _basic("bob", "guess")
    assert [requests.get(url + "/v2/", headers=wrong).status_code
            for url in (one, two, one)] == [401, 401, 401]
    for url in (one, two):
        r = requests.get(url + "/v2/", headers=_basic("bob", PASSWORDS["bob"]))
        assert r.status_code == 429, url
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert int(r.headers["Retry-After"]) >= 1
