"""Quota usage stays equal to `ociregistry du --quotas` (counted from scratch) through
random pushes, mounts, deletes, GCs, refused pushes and failed or abandoned uploads.

Three namespaces: a roomy one (with a nested quota on part of it), a tight one that
refuses some pushes, and one without a quota that blobs are mounted from and into.
Blobs come from a small shared pool, so the same layer lands in several repositories
and namespaces (deduplication), and GC runs with no grace period and expires every
open upload (upload_ttl_seconds 0), so every removal path is taken.
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

import pytest
import requests

from tests.quotas import support as s
from tests.server import RegistryProcess

NO_GRACE = {"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0",
            "OCIREGISTRY_GC__UPLOAD_TTL_SECONDS": "0"}
STEPS = 60
CHECK_EVERY = int(os.environ.get("QUOTA_CHECK_EVERY", "12"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    proc = RegistryProcess(tmp_path_factory.mktemp("quota-random") / "data",
                           env=NO_GRACE).start()
    yield proc
    proc.stop()


class Walk:
    """One random run and what it has pushed so far."""

    def __init__(self, url: str, seed: int, admin: str | None = None) -> None:
        self.url = url
        self.admin = admin or url  # quotas and GC: the registry host itself, not a proxy
        self.rng = random.Random(seed)
        self.session = requests.Session()
        tag = uuid.uuid4().hex[:6]
        self.roomy, self.tight, self.free = f"qa{tag}", f"qb{tag}", f"qc{tag}"
        self.repos = [f"{self.roomy}/one", f"{self.roomy}/two/deep", f"{self.tight}/one",
                      f"{self.tight}/two", f"{self.free}/one"]
        self.pool = [os.urandom(self.rng.randint(500, 6000)) for _ in range(10)]
        self.manifests: list[tuple[str, str]] = []  # (repo, digest)
        self.blobs: list[tuple[str, str]] = []  # (repo, digest) linked by a push or mount
        self.open: list[str] = []  # upload locations left open
        self.refusals = 0

    def check(self, target: Any) -> None:
        kept = s.quotas(self.admin)
        walked = s.du_quotas(target)
        for namespace, quota in kept.items():
            if not namespace.startswith((self.roomy, self.tight)):
                continue
            assert quota["usage"] == walked[namespace]["usage"], (namespace, quota,
                                                                  walked[namespace])
            assert quota["usage"] <= quota["limit"], quota

    def _location(self, r: requests.Response) -> str:
        location = r.headers["Location"]
        return location if location.startswith("http") else self.url + location

    # -- the operations ------------------------------------------------------------
    def push(self) -> None:
        repo = self.rng.choice(self.repos)
        layers = self.rng.sample(self.pool, self.rng.randint(1, 3))
        if self.rng.random() < 0.3:
            layers.append(os.urandom(self.rng.randint(100, 3000)))  # a layer of its own
        config, manifest = s.image(os.urandom(4), layers)
        mode = self.rng.choice(["monolithic", "chunked", "streamed"])
        r = s.push_image(self.session, self.url, repo, f"t{self.rng.randint(0, 5)}", config,
                         layers, manifest, mode)
        if s.denied(r):
            self.refusals += 1
            return
        assert r.status_code == 201, r.text
        self.manifests.append((repo, r.headers["Docker-Content-Digest"]))
        self.blobs += [(repo, s.sha256(b)) for b in [config, *layers]]

    def mount(self) -> None:
        if not self.blobs:
            return
        source, digest = self.rng.choice(self.blobs)
        target = self.rng.choice(self.repos)
        r = self.session.post(f"{self.url}/v2/{target}/blobs/uploads/",
                              params={"mount": digest, "from": source}, timeout=s.TIMEOUT)
        if s.denied(r):
            self.refusals += 1
        elif r.status_code == 201:
            self.blobs.append((target, digest))
        else:  # not there any more: an upload session was opened instead
            assert r.status_code == 202, r.text
            self.open.append(self._location(r))

    def delete_manifest(self) -> None:
        if self.manifests:
            repo, digest = self.manifests.pop(self.rng.randrange(len(self.manifests)))
            r = self.session.delete(f"{self.url}/v2/{repo}/manifests/{digest}",
                                    timeout=s.TIMEOUT)
            assert r.status_code in (202, 404), r.text

    def delete_blob(self) -> None:
        if self.blobs:
            repo, digest = self.blobs.pop(self.rng.randrange(len(self.blobs)))
            r = self.session.delete(f"{self.url}/v2/{repo}/blobs/{digest}", timeout=s.TIMEOUT)
            assert r.status_code in (202, 404), r.text

    def gc(self) -> None:
        params = {"delete_untagged": "true"} if self.rng.random() < 0.5 else {}
        r = self.session.post(f"{self.admin}/v2/gc", params=params, timeout=s.TIMEOUT)
        assert r.status_code == 200, r.text
        self.open.clear()  # upload_ttl_seconds 0: every open session expired

    def failed_upload(self) -> None:
        repo = self.rng.choice(self.repos)
        r = self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/", timeout=s.TIMEOUT)
        assert r.status_code == 202, r.text
        data = os.urandom(self.rng.randint(100, 4000))
        r = self.session.patch(self._location(r), data=data, timeout=s.TIMEOUT)
        if s.denied(r):
            self.refusals += 1
            return
        assert r.status_code == 202, r.text
        r = self.session.put(self._location(r), params={"digest": s.sha256(b"other")},
                             timeout=s.TIMEOUT)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"

    def abandoned_upload(self) -> None:
        repo = self.rng.choice(self.repos)
        r = self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/", timeout=s.TIMEOUT)
        assert r.status_code == 202, r.text
        data = os.urandom(self.rng.randint(100, 4000))
        r = self.session.patch(self._location(r), data=data, timeout=s.TIMEOUT)
        if s.denied(r):
            self.refusals += 1
            return
        assert r.status_code == 202, r.text
        self.open.append(self._location(r))

    def cancel_upload(self) -> None:
        if self.open:
            location = self.open.pop(self.rng.randrange(len(self.open)))
            r = self.session.delete(location, timeout=s.TIMEOUT)
            assert r.status_code in (204, 404), r.text

    def step(self) -> str:
        ops = [(self.push, 6), (self.mount, 3), (self.delete_manifest, 2),
               (self.delete_blob, 2), (self.gc, 1), (self.failed_upload, 1),
               (self.abandoned_upload, 2), (self.cancel_upload, 1)]
        op = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
        op()
        return op.__name__


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_usage_equals_du_through_random_operations(server, seed):
    walk = Walk(server.url, seed)
    created = [
        s.create_quota(server.url, f"{walk.roomy}/**", 10 << 20),
        s.create_quota(server.url, f"{walk.roomy}/two/*", 10 << 20),
        s.create_quota(server.url, f"{walk.tight}/**", 24_000, warning=12_000),
    ]
    done = []
    try:
        for i in range(STEPS):
            done.append(walk.step())
            if i % CHECK_EVERY == CHECK_EVERY - 1:
                try:
                    walk.check(server)
                except AssertionError as exc:
                    raise AssertionError(f"after {done}: {exc}") from exc
        walk.check(server)
    finally:
        for quota in created if not os.environ.get("QUOTA_KEEP") else []:
            s.delete_quota(server.url, quota["id"])
    assert walk.refusals > 0, f"the tight namespace never refused anything: {done}"
    assert "push" in done and "gc" in done, done
