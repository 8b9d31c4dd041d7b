"""CPU that event delivery itself costs: N pending pushes sent to K endpoints.

    .venv/bin/python -m bench.events_delivery_cpu [--manifests 1000] [--endpoints 3]
        [--formats plain,plain,plain] [--batch 0] [--rounds 3] [--profile 25]

A registry with ``events.deliver: false`` and the endpoints configured writes
``--manifests`` manifest.pushed events (one per push) and stops. Then this process
runs ``events.delivery.Delivery`` on the same index (as the delivery process does)
until every receiver has every event, and prints the CPU seconds that took (this
process's: the receivers' threads are in it too, kept trivial: a read and a 204).
``--profile N`` runs one more round with every thread under cProfile and prints
its N costliest functions (cumulative, then own time). Being CPU time of one
process doing one thing, the figure holds on a busy machine far better than a
push rate does.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.events_push import Sink, push_all, start


def pending(root: Path, count: int, endpoints: list[dict]) -> Path:
    """A data directory holding ``count`` pushes' events, none delivered."""
    config = {"events": {"enabled": True, "deliver": False, "endpoints": endpoints}}
    proc, url = start(root, config)
    try:
        push_all(url, count, 8)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return root / "config.yml"


def profile_threads(profilers: list[cProfile.Profile]) -> None:
    """Run every thread started from now on under a profiler of its own (cProfile
    sees only the thread that enables it; delivery's work is in its threads)."""
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile(time.thread_time)  # CPU, not waits
        profilers.append(profiler)
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    threading.Thread.run = run  # type: ignore[method-assign]


def deliver(root: Path, config: Path, sinks: list[Sink], count: int) -> float:
    from ociregistry.config import load_settings
    from ociregistry.events.delivery import Delivery
    from ociregistry.metadata.store import MetadataStore

    settings = load_settings(str(config), {"data_dir": str(root / "data")})
    settings.events.deliver = True
    settings.events.poll_interval_seconds = 0.2
    store = MetadataStore(settings.database_url, durable=settings.storage.fsync)
    before = [s.count for s in sinks]
    delivery = Delivery(store, settings.events)
    started = time.process_time()
    delivery.start()
    deadline = time.monotonic() + 600
    while any(s.count - b < count for s, b in zip(sinks, before, strict=True)):
        if time.monotonic() > deadline:
            raise RuntimeError("not delivered within 10 minutes")
        time.sleep(0.05)
    delivery.stop()
    used = time.process_time() - started
    store.dispose()
    return used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifests", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--formats", default="", help="comma-separated, one per endpoint")
    parser.add_argument("--batch", type=int, default=0, help="batch_max_events (0: default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--keep-alive", action="store_true",
                        help="receivers speak HTTP/1.1 and keep connections open")
    args = parser.parse_args()
    formats = args.formats.split(",") if args.formats else ["plain"] * args.endpoints
    sinks = [Sink(args.keep_alive) for _ in formats]
    endpoints = [{"name": f"sink{i}", "url": s.url, "format": fmt,
                  "actions": ["manifest.pushed"], "batch_max_events": args.batch}
                 for i, (s, fmt) in enumerate(zip(sinks, formats, strict=True))]
    for sink, fmt in zip(sinks, formats, strict=True):
        if fmt == "distribution":  # its envelope says "push", not manifest.pushed
            sink.marker = b'"action":"push"'
    cpu = []
    for round_ in range(args.rounds + (1 if args.profile else 0)):
        root = Path(tempfile.mkdtemp(prefix="bench-events-cpu-"))
        try:
            config = pending(root, args.manifests, endpoints)
            profilers: list[cProfile.Profile] = []
            if round_ == args.rounds:
                profile_threads(profilers)
            used = deliver(root, config, sinks, args.manifests)
            if profilers:
                stats = pstats.Stats(*profilers, stream=sys.stdout)
                stats.sort_stats("cumulative").print_stats(args.profile)
                stats.sort_stats("tottime").print_stats(args.profile)
                continue
            cpu.append(used)
            print(json.dumps({"round": round_, "delivery_cpu_s": round(used, 3),
                              "requests": sum(s.requests for s in sinks)}), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    if cpu:
        print(json.dumps({"median_delivery_cpu_s": round(statistics.median(cpu), 3),
                          "manifests": args.manifests, "endpoints": len(formats),
                          "formats": formats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
