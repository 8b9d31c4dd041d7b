"""The measurements of one run against one registry. `run_suite` returns a flat dict
of metric name -> value; bench/report.py knows what each name means.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bench import loadgen
from bench.client import MANIFEST_TYPES, BenchError, Client
from bench.data import DOCKER_MANIFEST, Blob, Dataset, Image
from bench.proctree import MiB, Phase, tree_pids
from bench.servers import Registry

LISTED = 1000  # tags in one repository, and repositories in the catalog
SETUP_CLIENTS = 8


def parallel(n: int, work: Callable[[int], object]) -> float:
    """Run work(0..n-1) in n threads started together; wall seconds until all are done."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n + 1)

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def push_image(c: Client, repo: str, image: Image, tag: str) -> None:
    for layer in image.layers:
        with open(layer.path, "rb") as f:
            c.push_streamed(repo, f, layer.size, layer.digest)
    if c.request("HEAD", f"/v2/{repo}/blobs/{image.config_digest}").status != 200:
        c.push_bytes(repo, image.config, image.config_digest)
    c.put_manifest(repo, tag, image.manifest, DOCKER_MANIFEST)


def pull_image(c: Client, repo: str, image: Image, tag: str) -> None:
    if c.get_manifest(repo, tag) != image.manifest:
        raise BenchError(f"{repo}:{tag}: manifest differs from the one pushed")
    c.pull_blob(repo, image.config_digest, len(image.config))
    for layer in image.layers:
        c.pull_blob(repo, layer.digest, layer.size)


class Suite:
    def __init__(self, reg: Registry, data: Dataset, seconds: float) -> None:
        self.reg, self.data, self.seconds = reg, data, seconds
        self.m: dict[str, float] = {}
        self.phases: dict[str, Phase] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        assert self.reg.monitor is not None
        with self.reg.monitor.phase() as ph:
            self.phases[name] = ph
            yield ph

    def client(self) -> Client:
        return Client(self.reg.url)

    # -- 1. blob push ----------------------------------------------------------------

    def blob_push(self) -> None:
        d, c = self.data, self.client()
        with self.phase("push_mono"), open(d.big.path, "rb") as f:
            c.push_monolithic("bench/mono", f, d.big.size, d.big.digest)
        with self.phase("push_chunked"), open(d.big_chunked.path, "rb") as f:
            c.push_chunked("bench/chunked", f, d.big_chunked.size, d.big_chunked.digest)
        c.close()

        def quarter(i: int) -> None:
            blob, qc = d.quarter[i], self.client()
            with open(blob.path, "rb") as f:
                qc.push_monolithic(f"bench/q{i}", f, blob.size, blob.digest)
            qc.close()

        with self.phase("push_4x"):
            parallel(4, quarter)
        for name in ("push_mono", "push_chunked"):
            self.m[name] = d.big.size / MiB / self.phases[name].wall
        self.m["push_4x"] = sum(b.size for b in d.quarter) / MiB / self.phases["push_4x"].wall

    # -- 2. blob pull ----------------------------------------------------------------

    def blob_pull(self) -> None:
        big = self.data.big

        def pull(_: int) -> None:
            c = self.client()
            c.pull_blob("bench/mono", big.digest, big.size)
            c.close()

        with self.phase("pull_1"):
            pull(0)
        with self.phase("pull_8"):
            parallel(8, pull)
        self.m["pull_1"] = big.size / MiB / self.phases["pull_1"].wall
        self.m["pull_8"] = 8 * big.size / MiB / self.phases["pull_8"].wall
        c, rng, times = self.client(), random.Random(5), []
        for _ in range(50):
            start = rng.randrange(0, big.size - MiB)
            t0 = time.perf_counter()
            status, got = c.fetch(f"/v2/bench/mono/blobs/{big.digest}",
                                  {"Range": f"bytes={start}-{start + MiB - 1}"})
            times.append(time.perf_counter() - t0)
            if status != 206 or got != MiB:
                raise BenchError(f"Range GET: HTTP {status}, {got} bytes")
        c.close()
        self.m["range_ms"] = statistics.median(times) * 1000

    # -- 3. request rates -------------------------------------------------------------

    def loads(self) -> None:
        app, small, url = self.data.tiny, self.data.small, self.reg.url
        accept = {"Accept": MANIFEST_TYPES}
        targets = {
            "head_tag": (loadgen.ab_head, "/v2/bench/app/manifests/latest", accept),
            "get_tag": (loadgen.wrk, "/v2/bench/app/manifests/latest", accept),
            "get_digest": (loadgen.wrk, f"/v2/bench/app/manifests/{app.digest}", accept),
            "get_blob": (loadgen.wrk, f"/v2/bench/small/blobs/{small.digest}", {}),
            "get_base": (loadgen.wrk, "/v2/", {}),
        }
        for name, (tool, path, headers) in targets.items():
            with self.phase(name):
                load = tool(url + path, self.seconds, headers=headers)
            if load.errors:
                raise BenchError(f"{self.reg.kind} {name}: {load.errors} failed requests")
            self.m[f"{name}_rps"] = load.rps
            self.m[f"{name}_p99"] = load.p99_ms
            self.m[f"{name}_cpu_us"] = self.phases[name].cpu * 1e6 / load.requests

    # -- 4. listings -------------------------------------------------------------------

    def listings(self) -> None:
        tiny = self.data.tiny
        per_client = LISTED // SETUP_CLIENTS

        def tag(i: int) -> None:
            c = self.client()
            for k in range(i * per_client, (i + 1) * per_client):
                c.put_manifest("bench/tags", f"t{k:04d}", tiny.manifest, DOCKER_MANIFEST)
            c.close()

        def repos(i: int) -> None:
            c = self.client()
            for k in range(i * per_client, (i + 1) * per_client):
                repo = f"catalog/r{k:04d}"
                c.mount(repo, tiny.config_digest, "bench/app", tiny.config)
                c.put_manifest(repo, "latest", tiny.manifest, DOCKER_MANIFEST)
            c.close()

        c = self.client()
        push_image(c, "bench/tags", tiny, "t0000")
        self.m["tag_puts_s"] = parallel(SETUP_CLIENTS, tag)
        self.m["repo_puts_s"] = parallel(SETUP_CLIENTS, repos)
        # One request each (no n; Distribution 2.8 never pages tags): 21 of them, since
        # the median of 5 moved with a single slow answer (0.31-0.83x in one table).
        self.m["tags_ms"] = self._walk(c, "/v2/bench/tags/tags/list", "tags", LISTED, repeat=21)
        self.m["catalog_ms"] = self._walk(c, "/v2/_catalog?n=100", "repositories", LISTED)
        c.close()

    @staticmethod
    def _walk(c: Client, first: str, key: str, expect: int, repeat: int = 5) -> float:
        """Median milliseconds to read every page of a listing, following Link headers."""
        times = []
        for _ in range(repeat):
            t0, path, seen = time.perf_counter(), first, 0
            while path:
                reply = c.request("GET", path).expect(200)
                seen += len(json.loads(reply.body)[key] or [])
                link = reply.headers.get("Link")
                path = link[1:link.index(">")] if link else ""
            times.append(time.perf_counter() - t0)
            if seen < expect:
                raise BenchError(f"{first}: {seen} entries, wanted at least {expect}")
        return statistics.median(times) * 1000

    # -- 5. flows ----------------------------------------------------------------------

    def flows(self) -> None:
        image, pushes = self.data.pull_image, self.data.push_images
        c = self.client()
        push_image(c, "flow/pull", image, "latest")
        c.close()

        def puller(_: int) -> None:
            pc = self.client()
            pull_image(pc, "flow/pull", image, "latest")
            pc.close()

        def pusher(i: int) -> None:
            pc = self.client()
            push_image(pc, f"flow/push{i}", pushes[i], "latest")
            pc.close()

        with self.phase("pull_flow"):
            self.m["pull_flow_s"] = parallel(16, puller)
        with self.phase("push_flow"):
            self.m["push_flow_s"] = parallel(len(pushes), pusher)

    # -- the whole run ------------------------------------------------------------------

    def setup(self) -> None:
        """What the request loads read; it also warms every worker up a little."""
        c = self.client()
        c.push_bytes("bench/small", self.data.small.read(), self.data.small.digest)
        push_image(c, "bench/app", self.data.tiny, "latest")
        c.close()

    def step(self, name: str) -> None:
        start = time.perf_counter()
        getattr(self, name)()
        self.m[f"time_{name}_s"] = time.perf_counter() - start

    def finish(self) -> dict[str, float]:
        self._resources()
        return self.m

    def _resources(self) -> None:
        ph, d = self.phases, self.data
        pushed = 2 * d.big.size + sum(b.size for b in d.quarter)
        push_cpu = sum(ph[k].cpu for k in ("push_mono", "push_chunked", "push_4x"))
        self.m["cpu_push_ms"] = push_cpu * 1000 / (pushed / MiB)
        self.m["cpu_pull_ms"] = (ph["pull_1"].cpu + ph["pull_8"].cpu) * 1000 / (9 * d.big.size
                                                                                  / MiB)
        self.m["push_peak_mib"] = max(ph[k].peak_rss for k in ("push_mono", "push_chunked",
                                                               "push_4x")) / MiB
        assert self.reg.monitor is not None
        self.m["peak_rss_mib"] = self.reg.monitor.peak_rss / MiB
        self.m["peak_pss_mib"] = self.reg.monitor.peak_pss / MiB
        self.m["processes"] = len(tree_pids(self.reg.monitor.root))


STEPS = ("setup", "blob_push", "blob_pull", "loads", "listings", "flows")


def run_interleaved(suites: list[Suite]) -> None:
    """Each step against every registry in turn, so that both see the same moment
    of a noisy machine (the other one sits idle meanwhile)."""
    for name in STEPS:
        for suite in suites:
            suite.step(name)


def push_peaks(reg: Registry, blobs: list[Blob]) -> list[float]:
    """Peak tree RSS (MiB) during a monolithic push of each blob in turn."""
    assert reg.monitor is not None
    peaks, c = [], Client(reg.url)
    for i, blob in enumerate(blobs):
        with reg.monitor.phase() as ph, open(blob.path, "rb") as f:
            c.push_monolithic(f"bench/grow{i}", f, blob.size, blob.digest)
        peaks.append(ph.peak_rss / MiB)
    c.close()
    return peaks
