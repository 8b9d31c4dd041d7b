"""Immutable and protected tags on a live registry: refusals answer 403 DENIED naming
the rule, and nothing changes; management API and /v2 deletes are refused alike."""

from __future__ import annotations

from tests.lifecycle_tags.support import denied, history, push_image, put, tag_digest


def test_an_immutable_tag_cannot_be_moved_and_nothing_changes(live, suffix):
    s, repo = live.session("alice"), f"prod/app-{suffix}"
    first, manifest, _ = push_image(s, live.url, repo, "v1.2.3")
    other, _, _ = push_image(s, live.url, repo, None)  # pushed by digest: no tag moves
    other_manifest = s.get(f"{live.url}/v2/{repo}/manifests/{other}").content

    message = denied(put(s, live.url, repo, "v1.2.3", other_manifest),
                     "v1.2.3", repo, "immutable", "config:immutable[0]", "v*.*.*", "prod/**")
    assert "cannot be moved or deleted" in message
    assert tag_digest(s, live.url, repo, "v1.2.3") == first
    assert [e["action"] for e in history(s, live.url, repo, "v1.2.3")["entries"]] == ["push"]


def test_pushing_the_same_digest_again_is_accepted_and_records_nothing(live, suffix):
    s, repo = live.session("alice"), f"prod/app-{suffix}"
    first, manifest, _ = push_image(s, live.url, repo, "v2.0.0")
    r = put(s, live.url, repo, "v2.0.0", manifest)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == first
    assert len(history(s, live.url, repo, "v2.0.0")["entries"]) == 1


def test_a_push_that_moves_an_immutable_tag_among_others_changes_none(live, suffix):
    """Several tags in one push (?tag=): refused as a whole."""
    s, repo = live.session("alice"), f"prod/app-{suffix}"
    push_image(s, live.url, repo, "v3.0.0")
    digest, manifest, _ = push_image(s, live.url, repo, None)
    r = s.put(f"{live.url}/v2/{repo}/manifests/{digest}", params=[("tag", "fresh"),
                                                                   ("tag", "v3.0.0")],
              data=manifest, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    denied(r, "v3.0.0")
    assert tag_digest(s, live.url, repo, "fresh") is None
    # the same push without the immutable tag goes through
    r = s.put(f"{live.url}/v2/{repo}/manifests/{digest}", params={"tag": "fresh"},
              data=manifest, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201 and r.headers.get("OCI-Tag") == "fresh", r.text


def test_tags_outside_the_rule_move_freely(live, suffix):
    s = live.session("alice")
    push_image(s, live.url, f"prod/app-{suffix}", "latest")
    moved, _, _ = push_image(s, live.url, f"prod/app-{suffix}", "latest")
    push_image(s, live.url, f"dev/app-{suffix}", "v1.0.0")
    moved_dev, _, _ = push_image(s, live.url, f"dev/app-{suffix}", "v1.0.0")
    assert tag_digest(s, live.url, f"prod/app-{suffix}", "latest") == moved
    assert tag_digest(s, live.url, f"dev/app-{suffix}", "v1.0.0") == moved_dev


def test_deleting_an_immutable_tag_is_refused_everywhere(live, suffix):
    s, repo = live.session("alice"), f"prod/app-{suffix}"
    digest, _, _ = push_image(s, live.url, repo, "v1.0.0")
    denied(s.delete(f"{live.url}/v2/{repo}/manifests/v1.0.0"), "immutable", "v1.0.0")
    # by digest: the manifest would take the tag with it
    denied(s.delete(f"{live.url}/v2/{repo}/manifests/{digest}"), "immutable", "v1.0.0")
    r = live.session("root").delete(f"{live.url}/api/v1/repositories/{repo}/tags/v1.0.0")
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden" and "immutable" in r.json()["detail"]
    r = live.session("root").delete(f"{live.url}/api/v1/repositories/{repo}/manifests/{digest}")
    assert r.status_code == 403, r.text
    assert tag_digest(s, live.url, repo, "v1.0.0") == digest
    assert [e["action"] for e in history(s, live.url, repo, "v1.0.0")["entries"]] == ["push"]


def test_a_protected_tag_is_pushed_only_by_its_users_groups_and_robots(live, suffix):
    repo = f"team/svc-{suffix}"
    alice, bob = live.session("alice"), live.session("bob")
    deployer, other = live.session("deployer"), live.session("other")
    # bob is not in group release: he may not even create it
    digest, manifest, _ = push_image(bob, live.url, repo, None)
    denied(put(bob, live.url, repo, "stable", manifest), "protected", "stable", "bob")
    assert tag_digest(alice, live.url, repo, "stable") is None
    # alice (group release) creates it; the robot named by the rule moves it
    r = put(alice, live.url, repo, "stable", manifest)
    assert r.status_code == 201, r.text
    moved, _, _ = push_image(deployer, live.url, repo, "stable")
    # another robot and bob are refused, to move as to delete
    _, other_manifest, _ = push_image(other, live.url, repo, None)
    denied(put(other, live.url, repo, "stable", other_manifest), "protected", "robot$other")
    denied(bob.delete(f"{live.url}/v2/{repo}/manifests/stable"), "protected", "bob")
    denied(bob.delete(f"{live.url}/v2/{repo}/manifests/{moved}"), "protected")
    assert tag_digest(alice, live.url, repo, "stable") == moved
    # the group member deletes it
    assert alice.delete(f"{live.url}/v2/{repo}/manifests/stable").status_code == 202
    entries = history(alice, live.url, repo, "stable")["entries"]
    assert [(e["action"], e["actor_kind"], e["actor_name"]) for e in entries] == [
        ("delete", "user", "alice"), ("move", "robot", "robot$deployer"),
        ("push", "user", "alice")]
    assert entries[1]["previous_digest"] == digest and entries[1]["digest"] == moved


def test_rules_added_through_the_api_apply_at_once_and_can_be_removed(live, suffix):
    root, alice = live.session("root"), live.session("alice")
    repo = f"apps/{suffix}"
    r = root.post(f"{live.url}/api/v1/tag-rules", json={
        "kind": "immutable", "repositories": f"apps/{suffix}", "tags": "rc-*"})
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["source"] == f"api:{rule['id']}" and rule["read_only"] is False
    push_image(alice, live.url, repo, "rc-1")
    _, manifest, _ = push_image(alice, live.url, repo, None)
    denied(put(alice, live.url, repo, "rc-1", manifest), f"api:{rule['id']}", "rc-*")
    listed = root.get(f"{live.url}/api/v1/tag-rules").json()["items"]
    assert {"config:immutable[0]", "config:protected[0]", rule["source"]} <= {
        x["source"] for x in listed}
    assert alice.get(f"{live.url}/api/v1/tag-rules").status_code == 403  # admins only
    r = root.post(f"{live.url}/api/v1/tag-rules", json={
        "kind": "immutable", "tags": "x", "users": ["bob"]})
    assert r.status_code == 400, r.text
    assert root.delete(f"{live.url}/api/v1/tag-rules/{rule['id']}").status_code == 204
    assert root.get(f"{live.url}/api/v1/tag-rules/{rule['id']}").status_code == 404
    assert put(alice, live.url, repo, "rc-1", manifest).status_code == 201


def test_refusals_are_counted_by_rule(live, suffix):
    s, repo = live.session("alice"), f"prod/app-{suffix}"
    push_image(s, live.url, repo, "v9.9.9")
    denied(s.delete(f"{live.url}/v2/{repo}/manifests/v9.9.9"))
    text = s.get(f"{live.url}/metrics").text
    assert any(line.startswith("registry_tag_changes_refused_total{")
               and 'rule="config:immutable[0]"' in line and 'action="delete"' in line
               for line in text.splitlines()), text[-3000:]
