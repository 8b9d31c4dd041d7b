"""What pull statistics cost manifest GETs: the same build with them on and off, same run.

    .venv/bin/python bench/pull_stats.py [--runs 3] [--seconds 10] [--connections 32]

Starts `python app.py` (defaults: one worker per core, at least 2, 8 threads) with
`pull_stats.enabled` true, then false, alternating run after run, pushes one small
image with two tags, and measures manifest GET by tag and by digest with wrk. Prints
the median req/s of each and the median of the per-run ratios on/off (the figure to
quote: both saw the same moment of the machine). Issue 15's bar: a drop of at most 5 %.
Needs wrk (Debian: wrk).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.loadgen import wrk  # noqa: E402
from bench.servers import OURS, Registry  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SWITCH = "BENCH_OURS_OCIREGISTRY_PULL_STATS__ENABLED"


def _push(url: str, repo: str) -> str:
    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                          data=data, timeout=60)
        r.raise_for_status()
        return digest

    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(1024)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": blob(config), "size": len(config)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                   "digest": blob(layer), "size": len(layer)}]}).encode()
    for tag in ("latest", "v1"):
        requests.put(f"{url}/v2/{repo}/manifests/{tag}", data=body, timeout=60,
                     headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def measure(workdir: Path, enabled: bool, seconds: float,
            connections: int) -> dict[str, float]:
    os.environ[SWITCH] = "true" if enabled else "false"
    with Registry(OURS, workdir, label=f"pull_stats={enabled}") as reg:
        digest = _push(reg.url, "bench/app")
        headers = {"Accept": OCI_MANIFEST}
        by_tag = wrk(f"{reg.url}/v2/bench/app/manifests/latest", seconds, connections,
                     headers=headers)
        by_digest = wrk(f"{reg.url}/v2/bench/app/manifests/{digest}", seconds, connections,
                        headers=headers)
    if by_tag.errors or by_digest.errors:
        raise RuntimeError(f"errors under load: {by_tag.errors} by tag, "
                           f"{by_digest.errors} by digest")
    return {"tag": by_tag.rps, "digest": by_digest.rps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="pull-stats-bench-"))
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    try:
        for run in range(args.runs):
            order = (True, False) if run % 2 == 0 else (False, True)
            for enabled in order:
                figures = measure(root / f"run{run}-{enabled}", enabled, args.seconds,
                                  args.connections)
                results[enabled].append(figures)
                print(f"run {run + 1}, pull_stats={enabled}: GET by tag {figures['tag']:.0f}"
                      f" req/s, by digest {figures['digest']:.0f} req/s", flush=True)
    finally:
        os.environ.pop(SWITCH, None)
        shutil.rmtree(root, ignore_errors=True)
    for kind in ("tag", "digest"):
        on = statistics.median(r[kind] for r in results[True])
        off = statistics.median(r[kind] for r in results[False])
        ratio = statistics.median(a[kind] / b[kind]
                                  for a, b in zip(results[True], results[False], strict=True))
        print(f"manifest GET by {kind}: on {on:.0f} req/s, off {off:.0f} req/s, "
              f"median per-run ratio on/off {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
