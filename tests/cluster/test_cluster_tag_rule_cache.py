"""The tag rules each worker keeps parsed (lifecycle/tag_rules.py) are exact across
instances: every worker of every instance has read (and cached) the rules by pushing
tags, then a rule added or deleted through one instance's API decides the very next
push through each of the others. Also runs the write path's precompiled statements
(metadata/write_statements.py) on PostgreSQL: mounts, blob and manifest pushes."""

from __future__ import annotations

import requests

from tests.lifecycle_tags.support import denied, push_image, put


def fresh() -> requests.Session:
    """A new connection each time: the requests spread over an instance's workers."""
    s = requests.Session()
    s.trust_env = False
    return s


def test_a_rule_changed_on_one_instance_decides_the_next_push_on_every_other(make_cluster):
    cluster = make_cluster()
    urls = [inst.url for inst in cluster.instances]
    repo = "cache/app"
    _, manifest, blobs = push_image(fresh(), urls[0], repo, None)
    _, other, _ = push_image(fresh(), urls[1], repo, None)
    # Fill every worker's cache: new tags pushed through every instance, many times.
    for i in range(24):
        r = put(fresh(), urls[i % 3], repo, f"warm-{i}", manifest)
        assert r.status_code == 201, r.text
    for k, url in enumerate(urls):
        assert put(fresh(), url, repo, f"rc-{k}", manifest).status_code == 201
    # A cross-repository mount and a manifest PUT into a new repository on PostgreSQL.
    config = next(iter(blobs))
    r = fresh().post(f"{urls[2]}/v2/cache/mounted/blobs/uploads/",
                     params={"mount": config, "from": repo}, timeout=60)
    assert r.status_code == 201, r.text

    for source in range(3):
        r = fresh().post(f"{urls[source]}/api/v1/tag-rules", json={
            "kind": "immutable", "repositories": repo, "tags": "rc-*"}, timeout=60)
        assert r.status_code == 201, r.text
        rule = r.json()["id"]
        for k, url in enumerate(urls):
            for _ in range(3):  # whichever worker answers
                denied(put(fresh(), url, repo, f"rc-{k}", other), f"api:{rule}")
        r = fresh().delete(f"{urls[(source + 1) % 3]}/api/v1/tag-rules/{rule}", timeout=60)
        assert r.status_code == 204, r.text
        for k, url in enumerate(urls):
            assert put(fresh(), url, repo, f"rc-{k}", other).status_code == 201
            assert put(fresh(), url, repo, f"rc-{k}", manifest).status_code == 201
