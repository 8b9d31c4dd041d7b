"""The GC's two finding queries timed in one process (no interpreter start, no file walk).

    PYTHONPATH=TREE/src .venv/bin/python -m bench.scale_gc DATABASE_URL [--repeat 5]

Prints the rows found and the median and fastest of ``--repeat`` runs of
``untagged_manifests`` and ``unreferenced_blobs``, whichever tree PYTHONPATH names
(an earlier revision unpacked with `git archive`: before and after a fix).
"""

from __future__ import annotations

import argparse
import statistics
import time

from ociregistry.metadata import gc_queries as q
from ociregistry.metadata.store import MetadataStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    store = MetadataStore(args.url)
    store.check()  # the connection opened before anything is timed
    now = time.time()
    cutoff = now - 3600
    for name, query in [
        ("untagged_manifests", lambda: q.untagged_manifests(store, cutoff, keep_since=now)),
        ("unreferenced_blobs", lambda: q.unreferenced_blobs(store, cutoff, set(), now)),
    ]:
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            rows = query()
            times.append((time.perf_counter() - began) * 1000)
        print(f"{name:20} rows={len(rows):7d} median={statistics.median(times):8.1f} ms"
              f" fastest={min(times):8.1f} ms")
    store.dispose()


if __name__ == "__main__":
    main()
