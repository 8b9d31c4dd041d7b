"""What durability costs a push: storage.fsync true (the default) against false.

Usage: python bench/fsync_cost.py [--rounds 3] [--small 200] [--large-mib 64]
Starts a fresh registry per round and setting (alternating, on temporary data
dirs) and measures, one request at a time: small blob pushes (4 KiB, one POST
each), manifest pushes (PUT), and a large monolithic blob push (MiB/s).
Prints the median of the rounds with min-max beside it.
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
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server import RegistryProcess  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(session: requests.Session, url: str, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    r = session.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    return digest


def measure(fsync: bool, small: int, large_mib: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"OCIREGISTRY_STORAGE__FSYNC": "true" if fsync else "false"}
        server = RegistryProcess(Path(tmp) / "data", env=env).start()
        try:
            session = requests.Session()
            blobs = [os.urandom(4096) for _ in range(small)]
            started = time.perf_counter()
            digests = [push(session, server.url, "bench/fsync", data) for data in blobs]
            blob_ms = (time.perf_counter() - started) * 1000 / small
            config = push(session, server.url, "bench/fsync", b"{}")
            started = time.perf_counter()
            for i, digest in enumerate(digests):
                manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                       "digest": config, "size": 2},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                        "digest": digest, "size": 4096}]}
                r = session.put(f"{server.url}/v2/bench/fsync/manifests/t{i}",
                                data=json.dumps(manifest),
                                headers={"Content-Type": OCI_MANIFEST})
                assert r.status_code == 201, r.text
            manifest_ms = (time.perf_counter() - started) * 1000 / small
            large = os.urandom(large_mib << 20)
            started = time.perf_counter()
            push(session, server.url, "bench/fsync", large)
            large_mibs = large_mib / (time.perf_counter() - started)
        finally:
            server.stop()
    return {"blob_ms": blob_ms, "manifest_ms": manifest_ms, "large_mibs": large_mibs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large-mib", type=int, default=64)
    args = parser.parse_args()
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for n in range(args.rounds):
        for fsync in ((True, False) if n % 2 == 0 else (False, True)):
            results[fsync].append(measure(fsync, args.small, args.large_mib))
    print(f"load average: {os.getloadavg()[0]:.1f}; {args.rounds} rounds, median (min-max)")
    for key, label in (("blob_ms", "4 KiB blob push, ms"),
                       ("manifest_ms", "manifest push, ms"),
                       ("large_mibs", f"{args.large_mib} MiB blob push, MiB/s")):
        cells = []
        for fsync in (True, False):
            values = [r[key] for r in results[fsync]]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        print(f"{label:32} fsync on: {cells[0]:24} off: {cells[1]}")


if __name__ == "__main__":
    main()
