"""Worker and thread counts, and the memory of the process tree, for `serve`.

    .venv/bin/python bench/workers.py [--configs 4x8 2x8 2x4] [--rounds 2] [--seconds 4]
    .venv/bin/python bench/workers.py --configs 4x8 --baseline REV   # memory: this tree vs REV

Each config WxT starts `python -m ociregistry serve --workers W --threads T` on
fresh storage and measures: the tree's RSS and PSS (bench/proctree.py) idle, a
manifest HEAD load (ab) and a ``GET /v2/`` load (wrk), 32 connections each
(server CPU µs per request, req/s), then a push load (8 clients, 4 monolithic
16 MiB blob pushes each: MiB/s, CPU ms per MiB), and the peak RSS and PSS over
it all. Rounds alternate the order. ``--baseline REV`` runs the same configs on
a git worktree of REV too (labelled REV), to compare memory before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.client import Client  # noqa: E402
from bench.data import make_blob  # noqa: E402
from bench.floors import REPO, TAG, push_image, running  # noqa: E402
from bench.loadgen import ab_head, wrk  # noqa: E402
from bench.proctree import TreeMonitor, tree_cpu_seconds, tree_memory  # noqa: E402
from bench.servers import free_port  # noqa: E402

MiB = 1 << 20
PUSH_CLIENTS, PUSHES_EACH, PUSH_MIB = 8, 4, 16


def serve_command(source: Path, port: int, data_dir: Path, workers: int,
                  threads: int) -> list[str]:
    return [sys.executable, str(source / "app.py"), "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), "--workers", str(workers), "--threads", str(threads)]


def push_load(url: str, blobs: list) -> float:
    """Every client pushes its blobs one after the other; returns the wall seconds."""
    def client(i: int) -> None:
        c = Client(url)
        try:
            for blob in blobs[i * PUSHES_EACH:(i + 1) * PUSHES_EACH]:
                with open(blob.path, "rb") as f:
                    c.push_monolithic(f"{REPO}-push{i}", f, blob.size, blob.digest)
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(PUSH_CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def measure(source: Path, workers: int, threads: int, seconds: float, tmp: Path,
            blobs: list) -> dict[str, float]:
    data_dir = tmp / f"data-{time.monotonic_ns()}"
    cmd = serve_command(source, free_port(), data_dir, workers, threads)
    try:  # app.py puts its own tree's src/ first on sys.path
        with running(cmd, data_dir, tmp / "server.log") as (pid, url):
            monitor = TreeMonitor(pid, interval=0.05).start()
            out: dict[str, float] = {}
            out["idle_rss"], out["idle_pss"] = (v / MiB for v in tree_memory(pid))
            push_image(url)
            head = f"{url}/v2/{REPO}/manifests/{TAG}"
            ab_head(head, 1)
            for name, load in (("head", lambda: ab_head(head, seconds)),
                               ("base", lambda: wrk(url + "/v2/", seconds))):
                cpu0 = tree_cpu_seconds(pid)
                result = load()
                if result.errors:
                    raise RuntimeError(f"{name}: {result.errors} errors")
                out[f"{name}_us"] = (tree_cpu_seconds(pid) - cpu0) / result.requests * 1e6
                out[f"{name}_rps"] = result.rps
            cpu0 = tree_cpu_seconds(pid)
            wall = push_load(url, blobs)
            pushed = len(blobs) * PUSH_MIB
            out["push_mibs"] = pushed / wall
            out["push_cpu_ms_per_mib"] = (tree_cpu_seconds(pid) - cpu0) / pushed * 1e3
            monitor.stop()
            out["peak_rss"], out["peak_pss"] = monitor.peak_rss / MiB, monitor.peak_pss / MiB
            return out
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


COLUMNS = [("idle_rss", "idle RSS MiB"), ("idle_pss", "idle PSS MiB"),
           ("peak_rss", "peak RSS MiB"), ("peak_pss", "peak PSS MiB"),
           ("head_us", "HEAD CPU µs/req"), ("head_rps", "HEAD req/s"),
           ("base_us", "GET /v2/ CPU µs/req"), ("base_rps", "GET /v2/ req/s"),
           ("push_mibs", "push MiB/s"), ("push_cpu_ms_per_mib", "push CPU ms/MiB")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=["4x8", "2x8", "2x4"], metavar="WxT")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4)
    p.add_argument("--baseline", help="git revision to run the same configs from, too")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="workers-"))
    sources = {"current": ROOT}
    try:
        if args.baseline:
            sources[args.baseline] = tmp / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                            str(tmp / "baseline"), args.baseline], check=True)
        blobs = [make_blob(tmp / f"blob{i}", PUSH_MIB * MiB, seed=100 + i)
                 for i in range(PUSH_CLIENTS * PUSHES_EACH)]
        runs = [(label, cfg) for cfg in args.configs for label in sources]
        results: dict[tuple[str, str], list[dict[str, float]]] = {r: [] for r in runs}
        for r in range(args.rounds):
            for label, cfg in runs if r % 2 == 0 else list(reversed(runs)):
                workers, threads = (int(x) for x in cfg.split("x"))
                m = measure(sources[label], workers, threads, args.seconds, tmp, blobs)
                results[(label, cfg)].append(m)
                print(f"[{time.strftime('%H:%M:%S')}] round {r + 1} {label} {cfg}: "
                      + ", ".join(f"{k} {v:,.1f}" for k, v in m.items()), flush=True)
        load = os.getloadavg()
        print(f"\n{args.rounds} rounds, {args.seconds:g} s loads, 32 connections; push: "
              f"{PUSH_CLIENTS} clients x {PUSHES_EACH} x {PUSH_MIB} MiB; load average at the "
              f"end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
        print("| build | workers x threads | " + " | ".join(c for _, c in COLUMNS) + " |")
        print("|---|---|" + "--:|" * len(COLUMNS))
        for (label, cfg), ms in results.items():
            cells = []
            for key, _ in COLUMNS:
                values = [m[key] for m in ms]
                cells.append(f"{_fmt(statistics.median(values))} "
                             f"({_fmt(min(values))}–{_fmt(max(values))})")
            print(f"| {label} | {cfg} | " + " | ".join(cells) + " |")
    finally:
        if args.baseline:
            with contextlib.suppress(Exception):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(tmp / "baseline")], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
