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


def head_rps(mode: str, seconds: float, base: Path) -> tuple[float, int, int]:
    home = base / f"{mode}-{secrets.token_hex(3)}"
    home.mkdir()
    # 4 workers: what `serve` picks on 2 cores (two per core)
    server = RegistryProcess(home / "data", workers=4, env=LIMITS[mode]).start()
    try:
        load = ab_head(_push(server.url), seconds, headers={"Accept": OCI})
        assert mode == "exact" or load.errors == 0, load
        return load.rps, load.requests, load.errors
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        results: dict[str, list[float]] = {mode: [] for mode in LIMITS}
        for _ in range(args.runs):
            for mode in LIMITS:
                rps, done, refused = head_rps(mode, args.seconds, base)
                results[mode].append(rps)
                print(f"{mode}: {rps:.0f} HEAD/s ({refused} of {done} refused)", flush=True)
        for mode, values in results.items():
            print(f"per_address {mode}: median {statistics.median(values):.0f} HEAD/s "
                  f"(runs: {', '.join(f'{v:.0f}' for v in values)})")
        print(f"batch at 5000/s, burst 10000: {batch_size(5000, 10000)} tokens; "
              f"burst 4: {batch_size(5000, 4)}")
        print(f"one shared take() on SQLite: {round_trip_ms(base):.3f} ms")


if __name__ == "__main__":
    main()
