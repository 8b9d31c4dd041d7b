"""Pull statistics on a real server: GETs counted by tag and digest, HEADs not, written
in batches by every worker, shown and sorted in /api/v1, kept across a graceful stop."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.helpers import OCI_MANIFEST
from tests.lifecycle.support import lifecycle_registry, push_image, tags_listing, wait_for

ACCEPT = {"Accept": OCI_MANIFEST}


def _get(url: str, repo: str, ref: str, method: str = "GET") -> None:
    r = requests.request(method, f"{url}/v2/{repo}/manifests/{ref}", headers=ACCEPT, timeout=30)
    assert r.status_code == 200, r.text


def _by_name(url: str, repo: str) -> dict[str, dict]:
    return {t["name"]: t for t in tags_listing(url, repo)}


def test_gets_are_counted_per_tag_and_per_manifest_and_heads_are_not(tmp_path: Path) -> None:
    server = lifecycle_registry(tmp_path / "data").start()
    try:
        url, repo = server.url, "team/app"
        digest = push_image(url, repo, ["a", "b"])  # two tags, one manifest
        other = push_image(url, repo, ["c"])
        for _ in range(3):
            _get(url, repo, "a")
        _get(url, repo, "b")
        for _ in range(2):
            _get(url, repo, digest)
        for _ in range(5):
            _get(url, repo, "c", "HEAD")
            _get(url, repo, digest, "HEAD")

        def counted() -> dict | None:
            tags = _by_name(url, repo)
            return tags if (tags["a"]["pull_count"], tags["b"]["pull_count"]) == (3, 1) else None

        tags = wait_for(counted, what="tag pull counts")
        assert tags["c"]["pull_count"] == 0 and tags["c"]["last_pulled_at"] is None
        assert tags["a"]["last_pulled_at"] > 0
        def manifest_counted() -> dict | None:
            detail = requests.get(f"{url}/api/v1/repositories/{repo}/manifests/{digest}",
                                  timeout=30).json()
            return detail if detail["pull_count"] == 6 else None

        detail = wait_for(manifest_counted, what="manifest pull count")
        assert detail["last_pulled_at"] >= tags["a"]["last_pulled_at"]
        untouched = requests.get(f"{url}/api/v1/repositories/{repo}/manifests/{other}",
                                 timeout=30).json()
        assert untouched["pull_count"] == 0 and untouched["last_pulled_at"] is None

        # Sorted by last pull, newest first: b was pulled after a; c never (last).
        assert [t["name"] for t in tags_listing(url, repo, sort="pulled", order="desc")] == [
            "b", "a", "c"]
        page = tags_listing(url, repo, sort="pulled", order="asc", limit="1")
        assert [t["name"] for t in page] == ["c"]
    finally:
        server.stop()


def test_a_graceful_stop_writes_what_is_buffered(tmp_path: Path) -> None:
    # An hour between flushes: only the flush at worker exit can write these.
    env = {"OCIREGISTRY_PULL_STATS__FLUSH_INTERVAL_SECONDS": "3600"}
    server = lifecycle_registry(tmp_path / "data", env=env).start()
    url, repo = server.url, "team/app"
    push_image(url, repo, ["v1"])
    for _ in range(4):
        _get(url, repo, "v1")
    assert _by_name(url, repo)["v1"]["pull_count"] == 0  # still in the workers' buffers
    assert server.stop() == 0
    server.start()  # the same object: the same database under REGISTRY_TEST_DATABASE_URL
    try:
        assert _by_name(server.url, repo)["v1"]["pull_count"] == 4
    finally:
        server.stop()


def test_pull_statistics_can_be_switched_off(tmp_path: Path) -> None:
    server = lifecycle_registry(tmp_path / "data",
                                env={"OCIREGISTRY_PULL_STATS__ENABLED": "false"}).start()
    try:
        push_image(server.url, "team/app", ["v1"])
        _get(server.url, "team/app", "v1")
        server_stats = _by_name(server.url, "team/app")["v1"]
        assert server_stats["pull_count"] == 0
    finally:
        server.stop()
