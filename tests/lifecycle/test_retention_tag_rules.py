"""Retention beside the tag lifecycle: it never deletes an immutable tag, and what it
deletes is in the tag history, restorable (manifest and blobs kept) within the window."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.helpers import OCI_MANIFEST
from tests.lifecycle.support import lifecycle_registry, push_image

REPO = "ci/app"


def _api(url: str, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, f"{url}/api/v1{path}", timeout=120, **kwargs)


def _pull(url: str, ref: str) -> requests.Response:
    return requests.get(f"{url}/v2/{REPO}/manifests/{ref}", timeout=60,
                        headers={"Accept": OCI_MANIFEST})


def test_retention_keeps_immutable_tags_and_its_deletions_can_be_restored(
        tmp_path: Path) -> None:
    server = lifecycle_registry(tmp_path / "data").start()
    try:
        url = server.url
        digests = {tag: push_image(url, REPO, [tag]) for tag in ("v1", "t2", "t3")}
        manifest_t2 = _pull(url, "t2").content
        rule = _api(url, "POST", "/tag-rules",
                    json={"kind": "immutable", "repositories": "ci/**", "tags": "v*"})
        assert rule.status_code == 201, rule.text
        policy = {"repositories": ["ci/**"], "untagged": True,
                  "keep": [{"tags": ["*"], "latest_pushed": 1}]}
        assert _api(url, "PUT", "/retention/policies/p", json=policy).status_code == 200

        run = _api(url, "POST", "/retention/runs", json={"policy": "p", "dry_run": False})
        assert run.status_code == 200, run.text
        gone = {(x["kind"], x["tag"] or x["digest"]) for x in run.json()["runs"][0]["deletions"]}
        # v1 is older than t2 but immutable: only t2 (and its image) go.
        assert gone == {("tag", "t2"), ("manifest", digests["t2"])}
        tags = requests.get(f"{url}/v2/{REPO}/tags/list", timeout=30).json()["tags"]
        assert tags == ["t3", "v1"]
        assert _pull(url, digests["t2"]).status_code == 404

        history = _api(url, "GET", f"/repositories/{REPO}/tags/t2/history").json()
        [deleted, pushed] = [(e["action"], e["actor_name"]) for e in history["entries"]]
        assert deleted == ("delete", "retention:p") and pushed[0] == "push"
        assert [x["digest"] for x in history["restorable"]] == [digests["t2"]]

        # GC does not free the retained image within the window: the restore is whole.
        assert requests.post(f"{url}/v2/gc", params={"delete_untagged": "true"},
                             timeout=120).status_code == 200
        r = _api(url, "POST", f"/repositories/{REPO}/tags/t2/restore",
                 json={"digest": digests["t2"]})
        assert r.status_code == 200, r.text
        again = _pull(url, "t2")
        assert again.status_code == 200 and again.content == manifest_t2
        layer = again.json()["layers"][0]["digest"]
        blob = requests.get(f"{url}/v2/{REPO}/blobs/{layer}", timeout=60)
        assert blob.status_code == 200
    finally:
        server.stop()
