"""Where a push flow's time goes, request by request, as its clients see it.

    .venv/bin/python bench/flow_requests.py [--registry ours|distribution] [--rounds 3]

Starts one registry (bench/servers.py; BENCH_OURS_OCIREGISTRY_X=v sets a setting of
ours, e.g. BENCH_OURS_OCIREGISTRY_STORAGE__FSYNC=false), then runs ``--rounds``
push flows as bench/compare.py does (8 clients, each a distinct 10-layer image:
per layer a blob HEAD, POST, one PATCH with the layer, PUT ?digest=; then the
config and the manifest), and prints per round the flow's time and, per kind of
request, how long the clients waited for it: count, mean, median, and the sum per
client (what the kind adds to a client's flow).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.client import Client  # noqa: E402
from bench.data import make_image  # noqa: E402
from bench.loads import push_image  # noqa: E402
from bench.servers import DISTRIBUTION, OURS, Registry  # noqa: E402

CLIENTS = 8


class TimedClient(Client):
    """A bench client that records how long each request took, by kind."""

    def __init__(self, url: str, waits: dict[str, list[float]], lock: threading.Lock) -> None:
        super().__init__(url)
        self.waits, self.lock = waits, lock

    def _record(self, kind: str, started: float) -> None:
        took = time.perf_counter() - started
        with self.lock:
            self.waits[kind].append(took)

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        reply = super().request(method, path, *args, **kwargs)
        what = ("manifest" if "/manifests/" in path
                else "upload" if "/uploads/" in path else "blob")
        self._record(f"{method} {what}", started)
        return reply

    def send_file(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        reply = super().send_file(method, path, *args, **kwargs)
        self._record(f"{method} with the layer", started)
        return reply


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--registry", choices=(OURS, DISTRIBUTION), default=OURS)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = [make_image(work / f"image{i}", 700 + i) for i in range(args.rounds * CLIENTS)]
        with Registry(args.registry, work / "registry") as reg:
            for r in range(args.rounds):
                waits: dict[str, list[float]] = defaultdict(list)
                lock = threading.Lock()

                def pusher(i: int, r: int = r, waits: dict = waits,
                           lock: threading.Lock = lock) -> None:
                    c = TimedClient(reg.url, waits, lock)
                    push_image(c, f"flow/r{r}c{i}", images[r * CLIENTS + i], "latest")
                    c.close()

                threads = [threading.Thread(target=pusher, args=(i,)) for i in range(CLIENTS)]
                started = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                flow = time.perf_counter() - started
                print(f"{args.registry}, round {r + 1}: push flow {flow:.2f} s")
                for kind, took in sorted(waits.items(), key=lambda kv: -sum(kv[1])):
                    mean, median = statistics.mean(took), statistics.median(took)
                    print(f"  {kind:22s} n={len(took):3d}  mean {mean * 1000:6.2f} ms"
                          f"  median {median * 1000:6.2f} ms"
                          f"  per client {sum(took) / CLIENTS:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
