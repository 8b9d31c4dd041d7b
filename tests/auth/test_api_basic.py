"""The API with Basic authentication and the access rules (Flask test client)."""

from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa

from ociregistry.metadata import schema
from tests.auth.conftest import OCI_MANIFEST, blob
from tests.auth.support import basic


def codes(response) -> list[str]:
    return [e["code"] for e in response.get_json()["errors"]]


def push_blob(client, repo: str, who: str | None = "alice") -> str:
    data, digest = blob()
    r = client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                    headers=basic(who) if who else {})
    assert r.status_code == 201, r.get_data()
    return digest


def push_image(client, repo: str, tag: str, who: str = "alice") -> str:
    config = push_blob(client, repo, who)
    layer = push_blob(client, repo, who)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config, "size": 64},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer, "size": 64}],
    }).encode()
    r = client.put(f"/v2/{repo}/manifests/{tag}", data=manifest,
                   headers={**basic(who), "Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.get_data()
    return r.headers["Docker-Content-Digest"]


def test_base_endpoint_challenges_and_checks_passwords(basic_registry):
    c = basic_registry
    r = c.get("/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="ociregistry", charset="UTF-8"'
    assert codes(r) == ["UNAUTHORIZED"]
    assert c.get("/v2/", headers=basic("alice")).status_code == 200
    for headers in (
        basic("alice", "wrong"),
        basic("nobody", "alice-secret"),
        basic("alice", "alice-secret" + "x" * 200),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        {"Authorization": "Bearer something"},  # not this mode's scheme
        {"Authorization": "Digest username=alice"},
    ):
        r = c.get("/v2/team-a/app/tags/list", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Basic ")


def test_empty_basic_credentials_are_anonymous(basic_registry):
    c = basic_registry
    push_image(c, "public/x", "1", who="carol")
    empty = {"Authorization": "Basic " + base64.b64encode(b":").decode()}
    assert c.get("/v2/public/x/manifests/1", headers=empty).status_code == 200
    assert c.get("/v2/team-a/x/tags/list", headers=empty).status_code == 401


def test_push_pull_delete_follow_the_rules(basic_registry):
    c = basic_registry
    digest = push_image(c, "team-a/app", "v1")
    # bob reads team-a but can't write or delete there
    assert c.get("/v2/team-a/app/manifests/v1", headers=basic("bob")).status_code == 200
    r = c.post("/v2/team-a/app/blobs/uploads/", headers=basic("bob"))
    assert r.status_code == 403 and codes(r) == ["DENIED"]
    assert r.get_json()["errors"][0]["detail"] == [
        {"Type": "repository", "Name": "team-a/app", "Action": "pull,push"}]
    # nobody without credentials: asked to authenticate
    r = c.get("/v2/team-a/app/manifests/v1")
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    # carol has no access at all: denied, and existence is not revealed
    assert c.get("/v2/team-a/app/manifests/v1", headers=basic("carol")).status_code == 403
    assert c.get("/v2/team-a/nothing/manifests/v1", headers=basic("carol")).status_code == 403
    # alice may push, but delete is not hers to do
    r = c.delete(f"/v2/team-a/app/manifests/{digest}", headers=basic("alice"))
    assert r.status_code == 403
    assert c.delete(f"/v2/team-a/app/manifests/{digest}", headers=basic("root")).status_code == 202
    # HEAD requests are checked too
    assert c.head("/v2/team-a/app/manifests/v1", headers=basic("carol")).status_code == 403


def test_personal_namespaces(basic_registry):
    c = basic_registry
    push_image(c, "users/alice/tool", "1", who="alice")
    assert c.get("/v2/users/alice/tool/tags/list", headers=basic("bob")).status_code == 403
    assert c.post("/v2/users/alice/x/blobs/uploads/", headers=basic("bob")).status_code == 403
    assert c.post("/v2/users/bob/x/blobs/uploads/", headers=basic("bob")).status_code == 202


def test_anonymous_pull_only_where_granted(basic_registry):
    c = basic_registry
    push_image(c, "public/base", "1", who="carol")
    assert c.get("/v2/public/base/manifests/1").status_code == 200
    assert c.get("/v2/public/base/tags/list").status_code == 200
    r = c.post("/v2/public/base/blobs/uploads/")
    assert r.status_code == 401
    data, digest = blob()
    r = c.post(f"/v2/public/base/blobs/uploads/?digest={digest}", data=data)
    assert r.status_code == 401
    assert c.head(f"/v2/public/base/blobs/{digest}").status_code == 404  # nothing stored


@pytest.mark.parametrize("path", [
    "/v2/team-a/../users/bob/x/tags/list",
    "/v2/users/bob/../../team-a/app/tags/list",
    "/v2/team-a/app/../../users/bob/x/blobs/uploads/",
    "/v2/team-a%2F..%2Fusers/bob/x/tags/list",
    "/v2/users/bob/./x/tags/list",
    "/v2/users//bob/x/tags/list",
    "/v2/Users/bob/x/tags/list",
    "/v2/users/bob/x%00/tags/list",
    "/v2/users/bob/x/../../../../etc/passwd/tags/list",
])
def test_path_tricks_never_reach_another_repository(basic_registry, path):
    c = basic_registry
    for method in (c.get, c.post):
        r = method(path, headers=basic("bob"))
        assert r.status_code in (400, 403, 404, 405), (path, r.status_code)
        assert r.status_code != 202
    with basic_registry.runtime.metadata.read() as conn:
        names = list(conn.execute(sa.select(schema.repositories.c.name)).scalars())
    assert all(".." not in n and "//" not in n for n in names), names


def test_upload_sessions_belong_to_their_repository_and_user(basic_registry):
    c = basic_registry
    r = c.post("/v2/team-a/app/blobs/uploads/", headers=basic("alice"))
    assert r.status_code == 202
    location = r.headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    data, digest = blob()
    # the same user, another repository she may push to: unknown there
    other = f"/v2/users/alice/x/blobs/uploads/{upload_id}"
    assert c.patch(other, data=data, headers=basic("alice")).status_code == 404
    assert c.put(f"{other}?digest={digest}", data=data,
                 headers=basic("alice")).status_code == 404
    # another user in a repository of their own, with the stolen id
    theirs = f"/v2/users/bob/x/blobs/uploads/{upload_id}"
    r = c.patch(theirs, data=data, headers=basic("bob"))
    assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    # another user with push rights on the same repository (root, an admin)
    for method in (c.get, c.patch, c.delete):
        r = method(location, data=data, headers=basic("root"))
        assert r.status_code == 404, method
    r = c.put(f"{location}?digest={digest}", data=data, headers=basic("root"))
    assert r.status_code == 404
    # bob can read team-a but not push: refused before the session is looked at
    assert c.patch(location, data=data, headers=basic("bob")).status_code == 403
    # the owner finishes it
    r = c.put(f"{location}?digest={digest}", data=data, headers=basic("alice"))
    assert r.status_code == 201
    assert c.head(f"/v2/team-a/app/blobs/{digest}", headers=basic("alice")).status_code == 200


def test_mount_needs_pull_on_the_source(basic_registry):
    c = basic_registry
    digest = push_blob(c, "team-a/secret", "alice")
    # carol can push to her namespace but can't read team-a: no mount, an upload instead
    r = c.post(f"/v2/users/carol/x/blobs/uploads/?mount={digest}&from=team-a/secret",
               headers=basic("carol"))
    assert r.status_code == 202, r.get_data()
    assert c.head(f"/v2/users/carol/x/blobs/{digest}", headers=basic("carol")).status_code == 404
    # without "from", a mount could pick any repository: never done with auth
    r = c.post(f"/v2/users/carol/x/blobs/uploads/?mount={digest}", headers=basic("carol"))
    assert r.status_code == 202
    assert c.head(f"/v2/users/carol/x/blobs/{digest}", headers=basic("carol")).status_code == 404
    # alice can read the source: mounted
    r = c.post(f"/v2/users/alice/x/blobs/uploads/?mount={digest}&from=team-a/secret",
               headers=basic("alice"))
    assert r.status_code == 201
    assert c.head(f"/v2/users/alice/x/blobs/{digest}", headers=basic("alice")).status_code == 200
    # bob may read team-a but not push into carol's space
    r = c.post(f"/v2/users/carol/x/blobs/uploads/?mount={digest}&from=team-a/secret",
               headers=basic("bob"))
    assert r.status_code == 403


def test_catalog_lists_only_pullable_repositories(basic_registry):
    c = basic_registry
    for repo, who in (("team-a/app", "alice"), ("users/alice/t", "alice"),
                      ("users/bob/t", "bob"), ("public/base", "carol"), ("public/z", "carol")):
        push_image(c, repo, "1", who)

    def catalog(who, query=""):
        r = c.get(f"/v2/_catalog{query}", headers=basic(who) if who else {})
        assert r.status_code == 200, r.get_data()
        return r.get_json()["repositories"], r.headers.get("Link")

    assert catalog("alice")[0] == ["public/base", "public/z", "team-a/app", "users/alice/t"]
    assert catalog("bob")[0] == ["public/base", "public/z", "team-a/app", "users/bob/t"]
    assert catalog(None)[0] == ["public/base", "public/z"]
    assert catalog("root")[0] == ["public/base", "public/z", "team-a/app", "users/alice/t",
                                  "users/bob/t"]
    # pagination over the filtered list
    names, link = catalog("alice", "?n=2")
    assert names == ["public/base", "public/z"] and "last=public%2Fz" in link
    names, link = catalog("alice", "?n=2&last=public/z")
    assert names == ["team-a/app", "users/alice/t"]
    names, link = catalog("alice", "?n=2&last=team-a/app")
    assert names == ["users/alice/t"] and link is None


def test_catalog_needs_credentials_when_anonymous_has_no_rule(make_registry):
    c = make_registry("basic", auth={"rules": [{"users": ["alice"], "actions": ["pull"]}]})
    assert c.get("/v2/_catalog").status_code == 401
    assert c.get("/v2/_catalog", headers=basic("alice")).status_code == 200


def test_gc_needs_admin(basic_registry):
    c = basic_registry
    assert c.post("/v2/gc?dry_run=true").status_code == 401
    r = c.post("/v2/gc?dry_run=true", headers=basic("alice"))
    assert r.status_code == 403 and codes(r) == ["DENIED"]
    r = c.post("/v2/gc?dry_run=true", headers=basic("root"))
    assert r.status_code == 200, r.get_data()
    # an admin may do it from anywhere, not only the registry host
    r = c.post("/v2/gc?dry_run=true", headers=basic("root"),
               environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert r.status_code == 200


def test_without_auth_everything_is_open_but_gc_is_local(make_registry):
    c = make_registry(None)
    assert c.get("/v2/").status_code == 200
    push_blob(c, "any/repo", None)
    assert c.post("/v2/gc?dry_run=true").status_code == 200
    r = c.post("/v2/gc?dry_run=true", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert r.status_code == 403
    # mount without "from" still works as before
    digest = push_blob(c, "any/repo", None)
    assert c.post(f"/v2/other/blobs/uploads/?mount={digest}").status_code == 201


def test_rate_limit_per_address(make_registry):
    c = make_registry("basic", rate_limit={"per_address": 0.001, "burst": 3})
    statuses = [c.get("/v2/", headers=basic("alice")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = c.get("/v2/", headers=basic("alice"))
    assert codes(r) == ["TOOMANYREQUESTS"]
    assert int(r.headers["Retry-After"]) >= 1
    # another address has its own budget
    r = c.get("/v2/", headers=basic("alice"), environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert r.status_code == 200


def test_rate_limit_per_user(make_registry):
    c = make_registry("basic", rate_limit={"per_user": 0.001, "burst": 2})
    for i in range(2):
        addr = {"REMOTE_ADDR": f"10.0.0.{i + 1}"}
        assert c.get("/v2/", headers=basic("alice"), environ_base=addr).status_code == 200
    r = c.get("/v2/", headers=basic("alice"), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert r.status_code == 429 and r.headers["Retry-After"]
    assert c.get("/v2/", headers=basic("bob")).status_code == 200


def test_rate_limiting_is_off_by_default(basic_registry):
    assert all(basic_registry.get("/v2/", headers=basic("alice")).status_code == 200
               for _ in range(150))


def test_concurrent_upload_limit_per_user(make_registry):
    c = make_registry("basic", limits={"max_uploads_per_user": 2})
    for _ in range(2):
        assert c.post("/v2/team-a/app/blobs/uploads/", headers=basic("alice")).status_code == 202
    r = c.post("/v2/team-a/app/blobs/uploads/", headers=basic("alice"))
    assert r.status_code == 429 and codes(r) == ["TOOMANYREQUESTS"]
    assert c.post("/v2/users/bob/x/blobs/uploads/", headers=basic("bob")).status_code == 202


def test_upload_session_lifetime(make_registry):
    c = make_registry("basic", limits={"upload_session_lifetime_seconds": 600})
    r = c.post("/v2/team-a/app/blobs/uploads/", headers=basic("alice"))
    location = r.headers["Location"]
    assert c.get(location, headers=basic("alice")).status_code == 204
    with c.runtime.metadata.write() as conn:  # the session started long ago
        conn.execute(schema.uploads.update().values(created_at=0))
    r = c.patch(location, data=b"late", headers=basic("alice"))
    assert r.status_code == 404 and codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert "expired" in r.get_json()["errors"][0]["message"]


def test_failed_authentications_are_counted_in_metrics(basic_registry):
    c = basic_registry

    def failures() -> float:
        text = c.get("/metrics").get_data(as_text=True)
        for line in text.splitlines():
            if line.startswith('registry_auth_failures_total{reason="bad_credentials"}'):
                return float(line.split()[-1])
        return 0.0

    before = failures()
    for _ in range(3):
        assert c.get("/v2/", headers=basic("alice", "wrong")).status_code == 401
    assert c.get("/v2/", headers=basic("alice")).status_code == 200
    assert failures() - before == 3
