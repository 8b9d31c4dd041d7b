"""What a quota costs on the push path: the same build, pushes into repositories that a
quota covers and into ones it does not, alternating, same run.

    .venv/bin/python bench/quota_push.py [--rounds 3] [--clients 8] [--layers 10]

Starts one registry (this tree, defaults), creates a quota on `quota/**` (limit far
above what is pushed), then per round pushes `clients` distinct images of `layers`
layers (64 KiB each, monolithic, as the push flow of bench/hotpaths.py) in parallel into
`free/...` and into `quota/...`, in alternating order. Prints the median time of each
and the median per-round ratio quota/free. Blob pushes and manifest PUTs are what the
quota accounting adds statements to; pulls are untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import OURS, Registry  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(url: str, repo: str, layers: int) -> None:
    session = requests.Session()
    config = json.dumps({"os": "linux", "architecture": "amd64",
                         "n": os.urandom(8).hex()}).encode()
    blobs = [config, *(os.urandom(64 << 10) for _ in range(layers))]
    for blob in blobs:
        r = session.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": _digest(blob)},
                         data=blob, timeout=120)
        r.raise_for_status()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": _digest(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": _digest(b), "size": len(b)} for b in blobs[1:]]}
    r = session.put(f"{url}/v2/{repo}/manifests/latest", data=json.dumps(manifest),
                    headers={"Content-Type": OCI_MANIFEST}, timeout=120)
    r.raise_for_status()


def flow(url: str, prefix: str, round_no: int, clients: int, layers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: push_image(url, f"{prefix}/r{round_no}-{i}", layers),
                      range(clients)))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--layers", type=int, default=10)
    args = p.parse_args(argv)
    times: dict[str, list[float]] = {"free": [], "quota": []}
    ratios = []
    with tempfile.TemporaryDirectory(prefix="quota-bench-") as work, \
            Registry(OURS, Path(work) / "ours") as registry:
        r = requests.post(f"{registry.url}/api/v1/quotas",
                          json={"namespace": "quota/**", "limit": 1 << 50}, timeout=60)
        r.raise_for_status()
        flow(registry.url, "warmup", 0, args.clients, 2)
        for n in range(args.rounds):
            order = ("free", "quota") if n % 2 == 0 else ("quota", "free")
            got = {kind: flow(registry.url, kind, n, args.clients, args.layers)
                   for kind in order}
            for kind, seconds in got.items():
                times[kind].append(seconds)
            ratios.append(got["quota"] / got["free"])
        usage = requests.get(f"{registry.url}/api/v1/quotas", timeout=60).json()["items"][0]
    print(f"{args.rounds} rounds, {args.clients} clients x {args.layers} layers of 64 KiB")
    print("| push flow | seconds (median) |\n| --- | --- |")
    for kind in ("free", "quota"):
        print(f"| {kind} | {statistics.median(times[kind]):.2f} |")
    print(f"quota / free, median of per-round ratios: {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); quota usage at the end: "
          f"{usage['usage']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
