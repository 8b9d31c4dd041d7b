"""Robot accounts on the API: Basic on /v2/, the token service, scope, expiry, revocation.

In-process registries (Flask test client) for the rules, a real gunicorn with two
workers for revocation by the command line.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time

import jwt
import pytest

from ociregistry.auth.robots import parse_scope
from tests.auth.conftest import OCI_MANIFEST, blob
from tests.auth.support import RULES, SecureRegistry, auth_config, bearer

# Robots get what their scope allows, within what the rules give the group "robots";
# the rule naming robot$ci as an admin must not make it one.
ROBOT_RULES = RULES + [
    {"groups": ["robots"], "repositories": ["**"], "actions": ["pull", "push", "delete"]},
    {"users": ["robot$ci"], "actions": ["admin"]},
]
SERVICE = "test-registry"


def creds(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def codes(response) -> list[str]:
    return [e["code"] for e in response.get_json()["errors"]]


def push_image(c, repo: str, tag: str, headers: dict[str, str]) -> int:
    """Push a small image; the status of the first refused request (201 when all went)."""
    digests = []
    for _ in range(2):
        data, digest = blob()
        r = c.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data, headers=headers)
        if r.status_code != 201:
            return r.status_code
        digests.append(digest)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[0], "size": 64},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digests[1], "size": 64}],
    }).encode()
    r = c.put(f"/v2/{repo}/manifests/{tag}", data=manifest,
              headers={**headers, "Content-Type": OCI_MANIFEST})
    return r.status_code


@pytest.fixture
def robot_registry(make_registry):
    return make_registry("basic", auth={"rules": ROBOT_RULES})


@pytest.fixture
def robot_token_registry(make_registry):
    return make_registry("token", auth={"rules": ROBOT_RULES})


def create(registry, scope: list[str], name: str = "ci", **kwargs) -> tuple[str, str]:  # noqa: ANN003
    info, token = registry.auth.robots.create(name, parse_scope(scope), **kwargs)
    return info.id, token


def test_basic_robot_works_within_its_scope_only(robot_registry):
    c = robot_registry
    _, token = create(c, ["ci/**:pull,push", "public/**:pull"])
    robot = creds("robot$ci", token)
    assert c.get("/v2/", headers=robot).status_code == 200
    assert push_image(c, "ci/app", "v1", robot) == 201
    assert c.head("/v2/ci/app/manifests/v1", headers=robot).status_code == 200
    # Outside its scope: refused (403), though the rules would allow it.
    assert push_image(c, "other/app", "v1", robot) == 403
    assert push_image(c, "public/app", "v1", robot) == 403  # pull only there
    r = c.delete("/v2/ci/app/manifests/v1", headers=robot)
    assert r.status_code == 403 and codes(r) == ["DENIED"]


def test_rules_cut_down_a_robot_too(make_registry):
    c = make_registry("basic", auth={"rules": RULES + [
        {"groups": ["robots"], "repositories": ["ci/**"], "actions": ["pull"]}]})
    _, token = create(c, ["**:pull,push"])
    robot = creds("robot$ci", token)
    assert push_image(c, "ci/app", "v1", robot) == 403  # the scope says push, the rules don't
    assert c.get("/v2/ci/app/tags/list", headers=robot).status_code == 404  # pull allowed


def test_robot_is_never_an_admin(robot_registry):
    c = robot_registry
    _, token = create(c, ["**:pull,push,delete"])
    r = c.post("/v2/gc?dry_run=true", headers=creds("robot$ci", token))
    assert r.status_code == 403 and codes(r) == ["DENIED"]


def test_catalog_shows_only_what_the_scope_may_pull(robot_registry):
    c = robot_registry
    _, token = create(c, ["ci/**:pull,push", "other/**:push"])
    robot = creds("robot$ci", token)
    for repo in ("ci/a", "ci/b", "other/x"):
        assert push_image(c, repo, "v1", robot) == 201
    assert c.get("/v2/_catalog", headers=robot).get_json()["repositories"] == ["ci/a", "ci/b"]


def test_bad_expired_and_revoked_tokens_answer_401(robot_registry):
    c = robot_registry
    token_id, token = create(c, ["**:pull"])
    _, expiring = create(c, ["**:pull"], name="short", expires_in=3600)
    assert c.get("/v2/", headers=creds("robot$ci", token)).status_code == 200
    for headers in (creds("robot$ci", token + "x"), creds("robot$other", token),
                    creds("robot$ci", "alice-secret"), creds("ci", token)):
        r = c.get("/v2/", headers=headers)
        assert r.status_code == 401 and codes(r) == ["UNAUTHORIZED"], headers
    robots = c.auth.robots
    real_clock = robots.clock
    robots.clock = lambda: real_clock() + 3600
    try:
        assert c.get("/v2/", headers=creds("robot$short", expiring)).status_code == 401
        assert c.get("/v2/", headers=creds("robot$ci", token)).status_code == 200
    finally:
        robots.clock = real_clock
    robots.revoke(token_id=token_id)
    assert c.get("/v2/", headers=creds("robot$ci", token)).status_code == 401


def test_htpasswd_users_are_not_robots(robot_registry):
    """A robot$ name is never looked up in the htpasswd file, and robots can't use passwords."""
    c = robot_registry
    import bcrypt  # `ociregistry user add` refuses such a name; `htpasswd -B` does not
    hashed = bcrypt.hashpw(b"a-password", bcrypt.gensalt(4)).decode()
    with open(c.auth.htpasswd.path, "a", encoding="utf-8") as handle:
        handle.write(f"robot$ci:{hashed}\n")
    c.auth.htpasswd.reload()
    assert "robot$ci" in c.auth.htpasswd
    assert c.get("/v2/", headers=creds("robot$ci", "a-password")).status_code == 401


def token_of(c, headers: dict[str, str], *scopes: str) -> dict:
    r = c.get("/auth/token", query_string={"service": SERVICE, "scope": list(scopes),
                                           "offline_token": "true"}, headers=headers)
    assert r.status_code == 200, r.get_data()
    return r.get_json()


def test_token_service_grants_a_robot_its_scope_and_revocation_stops_the_token(
        robot_token_registry):
    c = robot_token_registry
    token_id, token = create(c, ["ci/**:pull,push"])
    robot = creds("robot$ci", token)
    body = token_of(c, robot, "repository:ci/app:pull,push,delete", "repository:x/y:pull",
                    "registry:admin:*")
    assert "refresh_token" not in body  # a robot logs in with its token each time
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == "robot$ci" and claims["rbt"] == token_id
    assert claims["access"] == [
        {"type": "repository", "name": "ci/app", "actions": ["pull", "push"]}]
    jwt_headers = bearer(body["token"])
    assert push_image(c, "ci/app", "v1", jwt_headers) == 201
    # Basic robot credentials on /v2/ work in token mode too (scripts, curl).
    assert c.head("/v2/ci/app/manifests/v1", headers=robot).status_code == 200
    # The OAuth2 password grant (docker login) works, without a refresh token.
    r = c.post("/auth/token", data={"grant_type": "password", "username": "robot$ci",
                                    "password": token, "client_id": "docker",
                                    "access_type": "offline", "service": SERVICE,
                                    "scope": "repository:ci/app:pull"})
    assert r.status_code == 200 and "refresh_token" not in r.get_json()
    assert c.get("/auth/token", query_string={"service": SERVICE},
                 headers=creds("robot$ci", token + "x")).status_code == 401

    c.auth.robots.revoke(token_id=token_id)
    # The JWT issued before the revocation is refused at once, not when it expires.
    r = c.head("/v2/ci/app/manifests/v1", headers=jwt_headers)
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert c.get("/auth/token", query_string={"service": SERVICE},
                 headers=robot).status_code == 401


def test_a_forged_robot_subject_without_its_token_is_refused(robot_token_registry):
    """A token for robot$ci from our issuer must name a live robot token (claim rbt)."""
    c = robot_token_registry
    issuer = c.auth.issuer
    access = [{"type": "repository", "name": "ci/app", "actions": ["pull"]}]
    for extra in (None, {"rbt": "000000000000"}):
        tok = issuer.issue("robot$ci", access, extra).token
        assert c.get("/v2/ci/app/tags/list", headers=bearer(tok)).status_code == 401


# -- a real server: revocation by the command line reaches every worker ------------
def cli(server: SecureRegistry, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ociregistry", "token", *args, "--config", str(server.config),
         "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_cli_created_token_works_and_cli_revocation_is_immediate_on_every_worker(tmp_path):
    base = tmp_path / "srv"
    config = {"auth": auth_config(base / "data", "basic", rules=ROBOT_RULES)}
    server = SecureRegistry(base / "data", config, workers=2).start()
    try:
        created = json.loads(cli(server, "create", "ci", "--scope", "ci/**:pull,push",
                                 "--expires", "1d", "--json"))
        assert created["user"] == "robot$ci" and created["state"] == "active"
        s = server.session()
        headers = creds("robot$ci", created["token"])
        # Many requests: both workers answer some of them.
        for _ in range(20):
            assert s.get(server.url + "/v2/", headers=headers).status_code == 200
        listed = json.loads(cli(server, "list", "--json"))
        assert [t["id"] for t in listed] == [created["id"]]
        assert listed[0]["last_used_at"] is not None and "token" not in listed[0]
        assert "revoked" in cli(server, "revoke", created["id"])
        for _ in range(20):
            assert s.get(server.url + "/v2/", headers=headers).status_code == 401
        assert json.loads(cli(server, "list", "--json")) == []
        assert json.loads(cli(server, "list", "--all", "--json"))[0]["state"] == "revoked"
        metrics = s.get(server.url + "/metrics").text
        counts = dict(re.findall(r'^registry_robot_auth_total\{result="(\w+)"\} ([\d.]+)$',
                                 metrics, re.M))
        assert float(counts["success"]) >= 20 and float(counts["revoked"]) >= 20, counts
    finally:
        server.stop()


def test_manifest_head_by_a_robot_costs_about_what_a_users_does(robot_registry):
    """Not a timing assertion: the robot's per-request work is one primary-key read,
    and last_used_at is written once, not per request."""
    c = robot_registry
    _, token = create(c, ["**:pull,push"])
    robot = creds("robot$ci", token)
    assert push_image(c, "ci/app", "v1", robot) == 201
    writes = []
    from ociregistry.metadata import robot_queries
    real = robot_queries.touch
    robot_queries.touch = lambda *a, **k: writes.append(a) or real(*a, **k)
    try:
        for _ in range(100):
            assert c.head("/v2/ci/app/manifests/v1", headers=robot).status_code == 200
    finally:
        robot_queries.touch = real
    assert len(writes) <= 1
    assert time.time() - c.auth.robots.list()[0].last_used_at < 3600
