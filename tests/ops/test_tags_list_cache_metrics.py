"""The tags list's page cache (metadata/tag_list_cache.py) counts its lookups in
``registry_tags_list_cache_lookups_total{result}``, summed over the workers: pages
read again are hits until a tag is created, whose next read is a miss that answers
the new list."""

from __future__ import annotations

import requests

from tests.helpers import make_image, put_manifest
from tests.ops.test_metrics import scrape, value
from tests.server import RegistryProcess

NAME = "registry_tags_list_cache_lookups_total"


def test_hits_until_a_tag_is_created_then_a_miss_with_the_new_list(tmp_path):
    server = RegistryProcess(tmp_path / "data", workers=2).start()
    try:
        url, repo = server.url, "cache/app"
        manifest = make_image(url, repo, layers=1)
        assert put_manifest(url, repo, "v1", manifest).status_code == 201
        before = scrape(url + "/metrics")
        kept = requests.Session()  # one connection: one worker, its cache
        for _ in range(10):
            r = kept.get(f"{url}/v2/{repo}/tags/list", timeout=60)
            assert r.json()["tags"] == ["v1"]
        middle = scrape(url + "/metrics")
        hits = value(middle, NAME, result="hit") - value(before, NAME, result="hit")
        misses = value(middle, NAME, result="miss") - value(before, NAME, result="miss")
        assert (hits + misses, misses) == (10, 1)
        assert put_manifest(url, repo, "v2", manifest).status_code == 201
        assert kept.get(f"{url}/v2/{repo}/tags/list", timeout=60).json()["tags"] == ["v1", "v2"]
        after = scrape(url + "/metrics")
        assert value(after, NAME, result="miss") - value(middle, NAME, result="miss") == 1
        assert value(after, NAME, result="hit") == value(middle, NAME, result="hit")
    finally:
        server.stop()
