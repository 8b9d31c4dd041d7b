"""SQLite writers queued (writer_queue.py) against an earlier revision: sleeps, futexes, CPU, wall.

    .venv/bin/python bench/sqlite_writers.py --baseline 00795ef [--runs 2] [--repos 1000]
        [--blob-mib 256] [--no-strace]

Starts both builds (`python app.py`, the defaults: SQLite, gunicorn workers x 8
threads) in alternating order and runs the write-heavy steps of bench/push_cpu.py:
8 clients making ``--repos`` repositories (cross-repo mount + manifest PUT), the
push flow (8 clients x a 10-layer image) and 4 concurrent pushes of a quarter of
``--blob-mib`` each. Per step: wall seconds and the process tree's CPU (from
/proc), and, under ``strace -f -c`` attached to every worker, the count of
nanosleep/clock_nanosleep (SQLite's busy handler sleeps with them), futex and flock
calls. strace slows everything, so its runs are separate from the timed ones
(``--no-strace`` skips them). The baseline is extracted with ``git archive``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import push_cpu  # noqa: E402
from bench.data import Dataset  # noqa: E402
from bench.proctree import tree_pids  # noqa: E402
from bench.servers import OURS, ROOT, Registry  # noqa: E402

STEPS = ("repos", "flow", "push_4x")
SYSCALLS = ("nanosleep", "clock_nanosleep", "futex", "flock")


@contextlib.contextmanager
def straced(reg: Registry, out: Path):  # type: ignore[no-untyped-def]
    """strace -f -c on every process of the registry but its arbiter, for the block."""
    assert reg.proc is not None
    workers = [p for p in tree_pids(reg.proc.pid) if p != reg.proc.pid]
    cmd = ["strace", "-f", "-c", "-e", "trace=" + ",".join(SYSCALLS), "-o", str(out)]
    for pid in workers:
        cmd += ["-p", str(pid)]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached to every thread
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def counts(path: Path) -> dict[str, int]:
    found = dict.fromkeys(SYSCALLS, 0)
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in found and fields[0][0].isdigit():
            # % time, seconds, usecs/call, calls, [errors,] syscall
            found[fields[-1]] = int(fields[3])
    return found


def run_steps(reg: Registry, data: Dataset, steps: list[str], trace_dir: Path | None
              ) -> dict[str, float]:
    s = push_cpu.Steps(reg, data)
    m: dict[str, float] = {}
    for step in steps:
        if trace_dir is None:
            getattr(s, step)()
            continue
        out = trace_dir / f"{step}.strace"
        with straced(reg, out):
            getattr(s, step)()
        m.update({f"{step}_{k}": v for k, v in counts(out).items()})
    m.update(s.m)
    return m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare with")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--repos", type=int, default=1000)
    p.add_argument("--blob-mib", type=int, default=256)
    p.add_argument("--steps", default=",".join(STEPS))
    p.add_argument("--no-strace", action="store_true")
    args = p.parse_args(argv)
    push_cpu.REPOS = args.repos
    steps = [s for s in args.steps.split(",") if s]
    tmp = Path(tempfile.mkdtemp(prefix="sqlite-writers-"))
    base = tmp / "baseline"
    base.mkdir()
    subprocess.run(f"git -C {ROOT} archive {args.baseline} | tar -x -C {base}", shell=True,
                   check=True)
    builds = {"queued": ROOT, "baseline": base}
    modes = [False] if args.no_strace else [False, True]
    results: dict[tuple[str, bool], list[dict[str, float]]] = {}
    try:
        data = Dataset.create(tmp / "content", args.blob_mib, push_clients=push_cpu.CLIENTS)
        for run in range(args.runs):
            for traced in modes:
                order = list(builds) if run % 2 == 0 else list(reversed(builds))
                for name in order:
                    work = tmp / f"{name}-{run}-{int(traced)}"
                    with Registry(OURS, work, source=builds[name], label=name) as reg:
                        m = run_steps(reg, data, steps, work if traced else None)
                    results.setdefault((name, traced), []).append(m)
                    print(f"run {run + 1} {name}{' strace' if traced else ''}: {m}",
                          file=sys.stderr)
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')} UTC, {args.runs} runs, {args.repos} repos, "
          f"{args.blob_mib // 4} MiB x 4, load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    print("| figure | " + " | ".join(builds) + " | queued ÷ baseline |")
    print("| --- | --: | --: | --: |")
    for traced in modes:
        keys = sorted({k for r in results[("queued", traced)] for k in r})
        for k in keys:
            vals = {n: statistics.median(r[k] for r in results[(n, traced)]) for n in builds}
            ratio = vals["queued"] / vals["baseline"] if vals["baseline"] else float("nan")
            label = f"{k}{' (under strace)' if traced and not k.endswith(SYSCALLS) else ''}"
            print(f"| {label} | " + " | ".join(f"{vals[n]:,.3f}" for n in builds)
                  + f" | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
