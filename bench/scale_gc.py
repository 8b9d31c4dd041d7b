"""The GC's finding queries timed in one process (no interpreter start, no file walk).

    PYTHONPATH=TREE/src .venv/bin/python -m bench.scale_gc DATABASE_URL [--repeat 5]
        [--explain]

Prints the rows found and the median and fastest of ``--repeat`` runs of
``untagged_manifests`` and ``unreferenced_blobs``, each as a run's first round
(nothing gone) and as a dry run's later rounds (the manifests found counted as
gone), whichever tree PYTHONPATH names (an earlier revision unpacked with
`git archive`: before and after a fix). ``--explain``: the plans of the later
rounds, with their timings (EXPLAIN ANALYZE on PostgreSQL).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import sqlalchemy as sa

from ociregistry.metadata import gc_queries as q
from ociregistry.metadata.store import MetadataStore


def explain(store: MetadataStore, run: Callable[[], object]) -> None:
    """The plans of the statements ``run`` executes (EXPLAIN ANALYZE on PostgreSQL)."""
    seen: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):  # noqa: ANN001, ANN202
        seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    prefix = ("EXPLAIN (ANALYZE, BUFFERS) " if store.dialect == "postgresql"
              else "EXPLAIN QUERY PLAN ")
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(prefix + statement, parameters)
            for row in cursor.fetchall():
                print("   ", " | ".join(str(v) for v in row)[:220])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    store = MetadataStore(args.url)
    store.check()  # the connection opened before anything is timed
    now = time.time()
    cutoff = now - 3600
    gone = {row[0] for row in q.untagged_manifests(store, cutoff, keep_since=now)}
    for name, query in [
        ("untagged_manifests", lambda: q.untagged_manifests(store, cutoff, keep_since=now)),
        ("unreferenced_blobs", lambda: q.unreferenced_blobs(store, cutoff, set(), now)),
        ("untagged, gone", lambda: q.untagged_manifests(store, cutoff, gone, now)),
        ("unreferenced, gone", lambda: q.unreferenced_blobs(store, cutoff, gone, now)),
    ]:
        times = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            rows = query()
            times.append((time.perf_counter() - began) * 1000)
        print(f"{name:20} rows={len(rows):7d} median={statistics.median(times):8.1f} ms"
              f" fastest={min(times):8.1f} ms", flush=True)
    if args.explain:
        print("untagged, gone")
        explain(store, lambda: q.untagged_manifests(store, cutoff, gone, now))
        print("unreferenced, gone")
        explain(store, lambda: q.unreferenced_blobs(store, cutoff, gone, now))
    store.dispose()


if __name__ == "__main__":
    main()
