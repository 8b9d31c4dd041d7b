"""Server CPU of the write paths: this tree against an earlier revision, same run.

    .venv/bin/python bench/push_cpu.py --baseline 32d2746 [--runs 3] [--blob-mib 256]

Prints the floors first (one core): SHA-256 of the bytes, and a plain
receive-and-write of a body (recv_into one reused buffer, os.write to a file) with
and without the hash, as CPU ms per MiB. Then starts both builds (`python app.py`
with their own `src/`, the same virtualenv, the defaults) in alternating order and
measures the registry's whole process tree CPU (from /proc) per MiB of a
monolithic push, a chunked push (8 MiB PATCHes), 4 concurrent pushes of a quarter
each, and per request of the repository set-up (cross-repo mount + manifest PUT, 8
clients) and of the push flow (8 clients x a 10-layer image, docker-push style).
CPU per MiB and per request move much less than wall time on a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.client import Client  # noqa: E402
from bench.data import DOCKER_MANIFEST, Dataset  # noqa: E402
from bench.loads import parallel, push_image  # noqa: E402
from bench.proctree import MiB  # noqa: E402
from bench.servers import OURS, ROOT, Registry  # noqa: E402

REPOS = 400  # repositories made by the set-up step (8 clients)
CLIENTS = 8


def sha256_ms_per_mib(total_mib: int = 256) -> float:
    block = os.urandom(MiB)
    h = hashlib.sha256()
    t0 = time.thread_time()
    for _ in range(total_mib):
        h.update(block)
    return (time.thread_time() - t0) * 1000 / total_mib


def receive_ms_per_mib(path: Path, size: int, workdir: Path, hashed: bool) -> float:
    """CPU of a thread that receives `size` bytes over loopback into one reused 1 MiB
    buffer and writes them to a file (and hashes them): the floor of a push."""
    server = socket.create_server(("127.0.0.1", 0))
    cpu: list[float] = []

    def sink() -> None:
        conn, _ = server.accept()
        buf = bytearray(MiB)
        view = memoryview(buf)
        h = hashlib.sha256()
        fd = os.open(workdir / "sink", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        t0, left = time.thread_time(), size
        while left:
            n = conn.recv_into(view, min(MiB, left))
            if not n:
                break
            os.write(fd, view[:n])
            if hashed:
                h.update(view[:n])
            left -= n
        cpu.append(time.thread_time() - t0)
        os.close(fd)
        conn.close()

    t = threading.Thread(target=sink)
    t.start()
    with socket.create_connection(server.getsockname()) as c, open(path, "rb") as f:
        c.sendfile(f, 0, size)
    t.join()
    server.close()
    return cpu[0] * 1000 / (size / MiB)


class Steps:
    def __init__(self, reg: Registry, data: Dataset) -> None:
        self.reg, self.data, self.m = reg, data, {}

    def measure(self, key: str, work: callable, units: float) -> None:
        assert self.reg.monitor is not None
        with self.reg.monitor.phase() as ph:
            work()
        self.m[f"{key}_cpu"] = ph.cpu * 1000 / units
        self.m[f"{key}_wall"] = ph.wall

    def push_mono(self) -> None:
        d = self.data
        c = Client(self.reg.url)
        with open(d.big.path, "rb") as f:
            self.measure("mono", lambda: c.push_monolithic("bench/mono", f, d.big.size,
                                                           d.big.digest), d.big.size / MiB)
        c.close()

    def push_chunked(self) -> None:
        d = self.data
        c = Client(self.reg.url)
        with open(d.big_chunked.path, "rb") as f:
            self.measure("chunked", lambda: c.push_chunked(
                "bench/chunked", f, d.big_chunked.size, d.big_chunked.digest),
                d.big_chunked.size / MiB)
        c.close()

    def push_4x(self) -> None:
        d = self.data

        def quarter(i: int) -> None:
            blob, qc = d.quarter[i], Client(self.reg.url)
            with open(blob.path, "rb") as f:
                qc.push_monolithic(f"bench/q{i}", f, blob.size, blob.digest)
            qc.close()

        self.measure("4x", lambda: parallel(4, quarter), sum(b.size for b in d.quarter) / MiB)

    def repos(self) -> None:
        tiny, per = self.data.tiny, REPOS // CLIENTS
        c = Client(self.reg.url)
        push_image(c, "bench/app", tiny, "latest")
        c.close()

        def work(i: int) -> None:
            rc = Client(self.reg.url)
            for k in range(i * per, (i + 1) * per):
                repo = f"catalog/r{k:04d}"
                rc.mount(repo, tiny.config_digest, "bench/app", tiny.config)
                rc.put_manifest(repo, "latest", tiny.manifest, DOCKER_MANIFEST)
            rc.close()

        # µs per repository (two requests each)
        self.measure("repos", lambda: parallel(CLIENTS, work), REPOS / 1000)

    def flow(self) -> None:
        images = self.data.push_images

        def work(i: int) -> None:
            pc = Client(self.reg.url)
            push_image(pc, f"flow/push{i}", images[i], "latest")
            pc.close()

        # ms per image (10 layers x HEAD/POST/PATCH/PUT, config, manifest)
        self.measure("flow", lambda: parallel(len(images), work), len(images))


STEPS = ("push_mono", "push_chunked", "push_4x", "repos", "flow")
FIGURES = [
    ("mono_cpu", "monolithic push, CPU ms/MiB"),
    ("chunked_cpu", "chunked push, CPU ms/MiB"),
    ("4x_cpu", "4 concurrent pushes, CPU ms/MiB"),
    ("repos_cpu", "mount + manifest PUT, CPU µs per repository"),
    ("flow_cpu", "push flow, CPU ms per 10-layer image"),
    ("mono_wall", "monolithic push, s"),
    ("chunked_wall", "chunked push, s"),
    ("4x_wall", "4 concurrent pushes, s"),
    ("repos_wall", f"{REPOS} repositories, s"),
    ("flow_wall", "push flow, s"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", help="git revision to compare with (none: this tree only)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--blob-mib", type=int, default=256)
    p.add_argument("--steps", default=",".join(STEPS),
                   help="comma-separated subset of " + ",".join(STEPS) + " (e.g. repos,flow)")
    args = p.parse_args(argv)
    steps_run = [s for s in args.steps.split(",") if s]
    if unknown := set(steps_run) - set(STEPS):
        p.error(f"unknown steps: {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="push-cpu-"))
    builds = {"current": ROOT}
    if args.baseline:
        builds["baseline"] = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(builds["baseline"]), args.baseline], check=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    try:
        data = Dataset.create(tmp / "content", args.blob_mib, push_clients=CLIENTS)
        floors = {
            "sha256": statistics.median(sha256_ms_per_mib() for _ in range(3)),
            "recv+write": statistics.median(
                receive_ms_per_mib(data.big.path, data.big.size, tmp, False) for _ in range(3)),
            "recv+write+sha256": statistics.median(
                receive_ms_per_mib(data.big.path, data.big.size, tmp, True) for _ in range(3)),
        }
        for run in range(args.runs):
            order = list(builds) if run % 2 == 0 else list(reversed(builds))
            with contextlib.ExitStack() as stack:
                steps = [Steps(stack.enter_context(Registry(
                    OURS, tmp / f"{name}-{run}", source=builds[name], label=name)), data)
                    for name in order]
                for step in steps_run:
                    for s in steps:
                        getattr(s, step)()
                for s in steps:
                    results[s.reg.label].append(s.m)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(builds["baseline"])], check=False)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {args.runs} runs, {args.blob_mib} MiB blobs, "
          f"load {os.getloadavg()[0]:.1f}")
    print("floors, one core, CPU ms/MiB: " + ", ".join(
        f"{k} {v:.2f} ({1000 / v:,.0f} MiB/s)" for k, v in floors.items()))
    names = list(builds)
    print("| measure | " + " | ".join(names) + (" | current ÷ baseline |" if
                                                   args.baseline else ""))
    print("| --- |" + " --- |" * (len(names) + bool(args.baseline)))
    for key, label in FIGURES:
        if any(key not in m for n in names for m in results[n]):
            continue  # a step not run
        cols = [statistics.median(m[key] for m in results[n]) for n in names]
        row = f"| {label} | " + " | ".join(f"{v:,.2f}" for v in cols)
        if args.baseline:
            ratios = [c[key] / b[key] for c, b in zip(results["current"], results["baseline"],
                                                      strict=True) if b[key]]
            row += (f" | {statistics.median(ratios):.2f} "
                    f"({min(ratios):.2f}–{max(ratios):.2f})")
        print(row + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
