"""Immutable tags, tag history and restores in a cluster (3 instances, PostgreSQL,
SeaweedFS, nginx): a rule added on one instance refuses at once on the others; of
eight simultaneous first pushes of an immutable tag through all instances exactly one
wins; a manifest deleted by digest on one instance, GC run on another, is restored
on the third, byte for byte."""

from __future__ import annotations

import threading

import requests

from tests.lifecycle_tags.support import denied, digest_of, history, push_image, put, tag_digest

SETTINGS = {"gc": {"grace_period_seconds": 0},
            "tags": {"immutable": [{"repositories": "prod/**", "tags": "v*.*.*"}]}}


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def test_tag_rules_history_and_restore_across_instances(make_cluster):
    cluster = make_cluster(settings=SETTINGS)
    urls = [inst.url for inst in cluster.instances]
    s = session()

    # configured rule: a push through one instance, refusals through the others
    first, _, _ = push_image(s, urls[0], "prod/app", "v1.0.0")
    _, other, _ = push_image(s, urls[1], "prod/app", None)
    denied(put(s, urls[1], "prod/app", "v1.0.0", other), "config:immutable[0]")
    denied(s.delete(f"{urls[2]}/v2/prod/app/manifests/v1.0.0"), "immutable")
    assert tag_digest(s, cluster.url, "prod/app", "v1.0.0") == first

    # a rule added through the API of instance 0 applies on instance 2 at once
    r = s.post(f"{urls[0]}/api/v1/tag-rules", json={"kind": "immutable",
                                                   "repositories": "team/*", "tags": "rc"})
    assert r.status_code == 201, r.text
    push_image(s, urls[1], "team/x", "rc")
    _, other, _ = push_image(s, urls[2], "team/x", None)
    denied(put(s, urls[2], "team/x", "rc", other), f"api:{r.json()['id']}")

    # history and restore: move on 1, delete by digest on 2, GC on 0, restore on 1
    a, _, _ = push_image(s, urls[0], "apps/web", "t")
    b, manifest_b, blobs_b = push_image(s, urls[1], "apps/web", "t", layers=2)
    assert s.delete(f"{urls[2]}/v2/apps/web/manifests/{b}").status_code == 202
    r = s.post(f"{urls[0]}/v2/gc", params={"delete_untagged": "true"}, timeout=300)
    assert r.status_code == 200, r.text
    r = s.post(f"{urls[1]}/api/v1/repositories/apps/web/tags/t/restore", json={"digest": b},
               timeout=60)
    assert r.status_code == 200, r.text
    got = s.get(f"{cluster.url}/v2/apps/web/manifests/t",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert got.status_code == 200 and got.content == manifest_b
    for digest, data in blobs_b.items():
        blob = s.get(f"{cluster.url}/v2/apps/web/blobs/{digest}", timeout=60)
        assert blob.status_code == 200 and digest_of(blob.content) == digest == digest_of(data)
    entries = history(s, urls[2], "apps/web", "t")["entries"]
    assert [(e["action"], e["previous_digest"], e["digest"]) for e in entries] == [
        ("restore", None, b), ("delete", b, None), ("move", a, b), ("push", None, a)]


def test_simultaneous_first_pushes_of_an_immutable_tag_one_wins(make_cluster):
    cluster = make_cluster(settings=SETTINGS, storage="filesystem")
    urls = [inst.url for inst in cluster.instances] + [cluster.url]
    s = session()
    manifests = [push_image(s, urls[i % 3], "prod/race", None)[1] for i in range(8)]
    barrier = threading.Barrier(len(manifests))
    statuses: list[int] = [0] * len(manifests)

    def push(i: int) -> None:
        own = session()
        barrier.wait(timeout=120)
        statuses[i] = put(own, urls[i % len(urls)], "prod/race", "v2.0.0", manifests[i]).status_code

    threads = [threading.Thread(target=push, args=(i,)) for i in range(len(manifests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(statuses) == [201] + [403] * (len(manifests) - 1), statuses
    winner = manifests[statuses.index(201)]
    assert tag_digest(s, cluster.url, "prod/race", "v2.0.0") == digest_of(winner)
    entries = history(s, cluster.url, "prod/race", "v2.0.0")["entries"]
    assert [(e["action"], e["digest"]) for e in entries] == [("push", digest_of(winner))]
