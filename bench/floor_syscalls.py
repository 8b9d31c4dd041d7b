"""One gunicorn worker under `ab -k`: CPU µs and system calls per request, per worker class.

    .venv/bin/python bench/floor_syscalls.py [--rounds 3] [--requests 20000] [--layer raw]
        [--classes ours stock linger] [--connections 8] [--threads 8] [--workers 1]

Each worker class serves the layer (bench/floor_apps.py) with 1 worker × N threads;
`ab -k -c C -n R` sends manifest HEADs. CPU per request is the worker's utime + stime
(from /proc) over the requests answered, without strace; then a second load
runs under `strace -c -f -p <worker>` for the system calls per request (futex
apart: GIL and queue hand-offs). With --workers N > 1: the CPU of the whole
tree, no strace. Rounds alternate the order of the classes.
Prints the medians (min–max) as Markdown. On a busy machine req/s is direction
only; CPU and system calls per request hold still.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import floors  # noqa: E402
from bench.floors import REPO, TAG, push_image, running  # noqa: E402
from bench.proctree import tree_cpu_seconds  # noqa: E402
from bench.servers import free_port  # noqa: E402

CLASSES = {"ours": "ociregistry.server_worker.RegistryThreadWorker", "stock": "gthread",
           "linger": "bench.linger_worker.LingerThreadWorker"}


def command(cls: str, layer: str, port: int, threads: int, workers: int = 1) -> list[str]:
    app = "bench.floor_apps:full()" if layer == "full" else f"bench.floor_apps:{layer}"
    return [sys.executable, "-m", "gunicorn", "-k", CLASSES[cls], "-w", str(workers),
            "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--keep-alive", "75",
            "--log-level", "warning", app]


def worker_pid(master: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
        pids = out.stdout.split()
        if pids:
            return int(pids[0])
        time.sleep(0.1)
    raise RuntimeError("no worker")


def ab(url: str, requests: int, connections: int) -> tuple[int, float, float]:
    out = subprocess.run(["ab", "-q", "-i", "-k", "-c", str(connections), "-n", str(requests),
                          "-s", "10", url], capture_output=True, text=True, check=True).stdout
    done = int(re.search(r"^Complete requests:\s+(\d+)", out, re.M).group(1))
    failed = int(re.search(r"^Failed requests:\s+(\d+)", out, re.M).group(1))
    if failed or not re.search(r"^Keep-Alive requests:\s+[1-9]", out, re.M):
        raise RuntimeError(out)
    rps = float(re.search(r"^Requests per second:\s+([\d.]+)", out, re.M).group(1))
    p99 = float(re.search(r"^\s+99%\s+(\d+)", out, re.M).group(1))
    return done, rps, p99


def syscalls(pid: int, url: str, requests: int, connections: int) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as log:
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", log.name],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached to every thread
        done, _, _ = ab(url, requests, connections)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        text = log.read()
    total = futex = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] not in ("syscall", "total") and fields[3].isdigit():
            total += int(fields[3])
            if fields[-1] == "futex":
                futex += int(fields[3])
    return total / done, futex / done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--workers", type=int, default=1,
                   help="more than 1: CPU of the whole tree, no strace")
    p.add_argument("--layer", default="raw", choices=["raw", "flask_bare", "full"])
    p.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--no-strace", action="store_true")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="floor-syscalls-"))
    data_dir = tmp / "data"
    os.environ["FLOORS_DATA_DIR"] = str(data_dir)
    rows: dict[str, list[dict[str, float]]] = {c: [] for c in args.classes}
    try:
        with running(floors.command("gunicorn", "full", free_port(), data_dir, 1, 2), data_dir,
                     tmp / "setup.log") as (_pid, url):
            push_image(url)
        for r in range(args.rounds):
            for cls in args.classes if r % 2 == 0 else list(reversed(args.classes)):
                cmd = command(cls, args.layer, free_port(), args.threads, args.workers)
                with running(cmd, data_dir, tmp / f"{cls}.log") as (master, url):
                    pid = worker_pid(master) if args.workers == 1 else master
                    target = f"{url}/v2/{REPO}/manifests/{TAG}"
                    ab(target, 500, args.connections)  # warm
                    cpu0 = tree_cpu_seconds(pid)
                    done, rps, p99 = ab(target, args.requests, args.connections)
                    m = {"cpu_us": (tree_cpu_seconds(pid) - cpu0) / done * 1e6,
                         "rps": rps, "p99_ms": p99}
                    if not args.no_strace and args.workers == 1:
                        m["calls"], m["futex"] = syscalls(pid, target, args.requests // 4,
                                                          args.connections)
                rows[cls].append(m)
                print(f"[{time.strftime('%H:%M:%S')}] round {r + 1} {cls}: "
                      + ", ".join(f"{k} {v:,.1f}" for k, v in m.items()), flush=True)
        load = os.getloadavg()
        print(f"\n{args.layer}, {args.workers} worker(s) x {args.threads} threads, "
              f"ab -k -c {args.connections} -n {args.requests}, {args.rounds} rounds; "
              f"load average at the end "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
        first = rows[args.classes[0]][0]
        keys = [k for k in ("cpu_us", "calls", "futex", "rps", "p99_ms") if k in first]
        print("| worker | " + " | ".join(keys) + " |\n|---|" + "--:|" * len(keys))
        for cls, runs in rows.items():
            cells = []
            for key in keys:
                values = [m[key] for m in runs]
                cells.append(f"{statistics.median(values):,.1f} "
                             f"({min(values):,.1f}–{max(values):,.1f})")
            print(f"| {cls} | " + " | ".join(cells) + " |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
