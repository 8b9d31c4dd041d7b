"""The first requests a fresh mirror sends an upstream that wants credentials.

A client pulls layers several at a time (skopeo 6, containerd 3, docker 3), so a
mirror's first contact with an upstream is often several blob fetches at once, in
one worker, none of them knowing yet which scheme the upstream wants. Each must
learn it from its own 401 and retry; none may fail because a sibling learnt first.
Real upstreams: Distribution with htpasswd (Basic), this registry in token mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.auth.support import SecureRegistry
from tests.mirror.upstreams import (
    DistributionUpstream,
    TokenUpstream,
    Upstream,
    seed,
    write_layered,
)

LAYERS = 8
ROUNDS = 3


@pytest.fixture(params=["basic", "token"])
def upstream(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Upstream]:
    server = (DistributionUpstream(tmp_path / "up", htpasswd=True) if request.param == "basic"
              else TokenUpstream(tmp_path / "up"))
    server.start()
    yield server
    server.stop()


def test_concurrent_first_blob_fetches_all_authenticate(upstream: Upstream, skopeo,
                                                        tmp_path: Path) -> None:
    image = write_layered(tmp_path / "layout", tmp_path.name, LAYERS, tag="v1")
    seed(upstream, skopeo, tmp_path / "layout", "v1", "team/app", "v1")
    user, password = upstream.credentials
    upstreams = [{"name": "up", "url": upstream.url, "username": user, "password": password}]
    # A race shows only sometimes: a few fresh mirrors, each meeting upstream anew.
    for attempt in range(ROUNDS):
        mirror = SecureRegistry(tmp_path / f"mirror{attempt}" / "data",
                                {"mirror": {"upstreams": upstreams}}, workers=1).start()
        try:
            def fetch(digest: str, url: str = mirror.url) -> tuple[int, str]:
                r = requests.get(f"{url}/v2/up/team/app/blobs/{digest}", timeout=120)
                return r.status_code, "sha256:" + hashlib.sha256(r.content).hexdigest()

            with ThreadPoolExecutor(LAYERS) as pool:
                got = list(pool.map(fetch, image.layer_digests))
            assert got == [(200, d) for d in image.layer_digests], (
                f"round {attempt + 1}: "
                + mirror.log_path.read_text(errors="replace")[-3000:])
        finally:
            mirror.stop()
