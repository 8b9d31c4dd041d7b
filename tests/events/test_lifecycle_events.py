"""The storage lifecycle's events: a retention deletion is a tag.deleted event naming its
policy and acting as retention:<policy>; a quota warning and a quota refusal are events."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from tests.lifecycle.support import lifecycle_registry, push_image, wait_for
from tests.quotas import support as quotas

TIMEOUT = 120


def _events(url: str, action: str) -> list[dict]:
    r = requests.get(f"{url}/api/v1/events", params={"action": action, "limit": 100},
                     timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_retention_and_quota_events(tmp_path: Path) -> None:
    server = lifecycle_registry(tmp_path / "data").start()
    try:
        url = server.url
        old = push_image(url, "ci/app", ["old"])
        push_image(url, "ci/app", ["new"])
        policy = {"repositories": ["ci/**"], "keep": [{"tags": ["*"], "latest_pushed": 1}]}
        r = requests.put(f"{url}/api/v1/retention/policies/p", json=policy, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        r = requests.post(f"{url}/api/v1/retention/runs", json={"policy": "p", "dry_run": False},
                          timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        [deleted] = _events(url, "tag.deleted")
        assert (deleted["repository"], deleted["digest"], deleted["tags"]) == (
            "ci/app", old, ["old"])
        assert deleted["details"]["policy"] == "p"
        assert deleted["actor"]["name"] == "retention:p"

        quotas.create_quota(url, "team/**", limit=20_000, warning=5_000)
        small = os.urandom(8_000)  # over the warning, under the limit
        r = requests.post(f"{url}/v2/team/app/blobs/uploads/",
                          params={"digest": quotas.sha256(small)}, data=small, timeout=TIMEOUT)
        assert r.status_code == 201, r.text
        [warning] = wait_for(lambda: _events(url, "quota.warning") or None, what="warning")
        assert warning["details"]["namespace"] == "team/**"
        assert warning["details"]["usage"] >= 8_000

        big = os.urandom(30_000)
        r = requests.post(f"{url}/v2/team/app/blobs/uploads/",
                          params={"digest": quotas.sha256(big)}, data=big, timeout=TIMEOUT)
        assert r.status_code == 403, r.text
        [refused] = wait_for(lambda: _events(url, "quota.refused") or None, what="refusal")
        assert refused["details"]["limit"] == 20_000
        assert refused["details"]["requested"] == 30_000
        assert refused["repository"] is None and refused["details"]["kind"] == "upload"
    finally:
        server.stop()
