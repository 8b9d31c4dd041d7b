"""What shared rate limits cost: manifest HEAD requests/s with ``rate_limit.per_address``
off (the default) and on, alternating, plus the cost of one shared-bucket round trip.

Usage: python bench/ratelimit.py [--seconds 10] [--runs 3]
Needs ApacheBench (Debian: apache2-utils).

- off:     no limit (the default): no index access for limits at all.
- batched: 5000/s, burst 10000: above what the load reaches, every request is
           allowed; a process takes 500 tokens per round trip to the index.
- exact:   5000/s, burst 4: batches of one, a round trip per request (some
           answers are 429: they cost the same round trip and are counted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.loadgen import ab_head  # noqa: E402
from bench.proctree import tree_cpu_seconds  # noqa: E402
from ociregistry.auth.ratelimit import batch_size  # noqa: E402
from ociregistry.metadata import rate_limit_queries  # noqa: E402
from ociregistry.metadata.store import MetadataStore  # noqa: E402
from tests.server import RegistryProcess  # noqa: E402

OCI = "application/vnd.oci.image.manifest.v1+json"
LIMITS = {
    "off": {},
    "batched": {"OCIREGISTRY_RATE_LIMIT__PER_ADDRESS": "5000",
                "OCIREGISTRY_RATE_LIMIT__BURST": "10000"},
    "exact": {"OCIREGISTRY_RATE_LIMIT__PER_ADDRESS": "5000",
              "OCIREGISTRY_RATE_LIMIT__BURST": "4"},
}


def _push(url: str) -> str:
    config = b"{}"
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    r = requests.post(f"{url}/v2/bench/app/blobs/uploads/?digest={digest}", data=config)
    assert r.status_code == 201, r.text
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
        "size": len(config)}, "layers": []}).encode()
    r = requests.put(f"{url}/v2/bench/app/manifests/v1", data=manifest,
                     headers={"Content-Type": OCI})
    assert r.status_code == 201, r.text
    return f"{url}/v2/bench/app/manifests/v1"


def head_rps(mode: str, seconds: float, base: Path) -> tuple[float, int, int, float]:
    """Requests/s, requests, refused, and the registry's CPU microseconds per request
    (its whole process tree: less sensitive than requests/s to other load on the machine)."""
    home = base / f"{mode}-{secrets.token_hex(3)}"
    home.mkdir()
    # 4 workers: what `serve` picked on 2 cores before its default became one per core
    server = RegistryProcess(home / "data", workers=4, env=LIMITS[mode]).start()
    try:
        url = _push(server.url)
        assert server.proc is not None
        cpu = tree_cpu_seconds(server.proc.pid)
        load = ab_head(url, seconds, headers={"Accept": OCI})
        cpu = tree_cpu_seconds(server.proc.pid) - cpu
        assert mode == "exact" or load.errors == 0, load
        return load.rps, load.requests, load.errors, cpu / load.requests * 1e6
    finally:
        server.stop()


def round_trip_ms(base: Path, count: int = 2000) -> float:
    """One shared-bucket take() on SQLite (what batch 1 would pay per request)."""
    db = MetadataStore(f"sqlite:///{base / 'rt.db'}")
    db.create_schema()
    start = time.perf_counter()
    for _ in range(count):
        rate_limit_queries.take(db, "addr:127.0.0.1", time.time(), 1e-6, 1.0, secrets.token_hex(8))
    db.dispose()
    return (time.perf_counter() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", nargs="*", choices=list(LIMITS), help="default: all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        modes = args.modes or list(LIMITS)
        results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
        for _ in range(args.runs):
            for mode in modes:
                rps, done, refused, cpu_us = head_rps(mode, args.seconds, base)
                results[mode].append((rps, cpu_us))
                print(f"{mode}: {rps:.0f} HEAD/s, {cpu_us:.0f} us CPU/request "
                      f"({refused} of {done} refused)", flush=True)
        for mode, values in results.items():
            rps = [v[0] for v in values]
            cpu = [v[1] for v in values]
            print(f"per_address {mode}: median {statistics.median(rps):.0f} HEAD/s, "
                  f"{statistics.median(cpu):.0f} us CPU/request "
                  f"(runs: {', '.join(f'{r:.0f}/{c:.0f}' for r, c in values)})")
        print(f"batch at 5000/s, burst 10000: {batch_size(5000, 10000)} tokens; "
              f"burst 4: {batch_size(5000, 4)}")
        print(f"one shared take() on SQLite: {round_trip_ms(base):.3f} ms")


if __name__ == "__main__":
    main()
