"""Did a change slow the hot paths? This tree against an earlier revision, same run.

    .venv/bin/python bench/hotpaths.py --baseline 57cdbb9 [--runs 3] [--seconds 10]

Checks the baseline revision out into a temporary git worktree, then starts both
builds (`python app.py` with their own `src/` first on PYTHONPATH, the same
virtualenv, the defaults) in alternating order, run after run, and measures on
each: manifest HEAD by tag (ab, 32 connections), manifest GET by tag and by
digest, blob GET, the empty /v2/ (wrk), monolithic, chunked and 4 concurrent
blob pushes, and the push flow (8 clients x 10-layer images). Prints the median
of each figure and the median of the per-run ratios current/baseline; the
per-run ratio is what to quote, as both builds saw the same moment of the machine.
Needs wrk and ApacheBench (Debian: wrk, apache2-utils).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.compare import log, remove_later  # noqa: E402
from bench.data import Dataset  # noqa: E402
from bench.loads import Suite  # noqa: E402
from bench.servers import OURS, ROOT, Registry  # noqa: E402

STEPS = ("setup", "blob_push", "loads", "flows")
# (metric, label, higher is better)
FIGURES = [
    ("head_tag_rps", "manifest HEAD by tag, req/s", True),
    ("head_tag_p99", "manifest HEAD by tag, p99 ms", False),
    ("get_tag_rps", "manifest GET by tag, req/s", True),
    ("get_digest_rps", "manifest GET by digest, req/s", True),
    ("get_blob_rps", "blob GET (1 KiB), req/s", True),
    ("get_base_rps", "GET /v2/, req/s", True),
    ("head_tag_cpu_us", "server CPU per manifest HEAD, µs", False),
    ("push_mono", "push monolithic, MiB/s", True),
    ("push_chunked", "push chunked, MiB/s", True),
    ("push_4x", "4 concurrent pushes, MiB/s", True),
    ("push_flow_s", "push flow (8 clients x 10 layers), s", False),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare with")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10, help="seconds per request load")
    p.add_argument("--blob-mib", type=int, default=128, help="size of the pushed blobs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="hotpaths-"))
    baseline_tree = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                    str(baseline_tree), args.baseline], check=True)
    head = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip()
    builds = {"current": ROOT, "baseline": baseline_tree}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    try:
        log(f"making test content in {tmp}")
        data = Dataset.create(tmp / "content", args.blob_mib, push_clients=8)
        for run in range(args.runs):
            order = list(builds) if run % 2 == 0 else list(reversed(builds))
            with contextlib.ExitStack() as stack:
                suites = [Suite(stack.enter_context(Registry(
                    OURS, tmp / f"{name}-{run}", source=builds[name], label=name)),
                    data, args.seconds) for name in order]
                for step in STEPS:
                    for suite in suites:
                        suite.step(step)
                for suite in suites:
                    results[suite.reg.label].append(suite.m)
            log(f"run {run + 1}/{args.runs} done")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(baseline_tree)], check=False)
        remove_later(tmp)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}: current ({head}) vs baseline "
          f"({args.baseline}), {args.runs} alternating runs, {args.seconds:g} s loads, "
          f"{args.blob_mib} MiB blobs\n")
    print("| measure | baseline | current | current ÷ baseline (median of runs) |")
    print("| --- | --- | --- | --- |")
    for key, label, _higher in FIGURES:
        base = [m[key] for m in results["baseline"]]
        cur = [m[key] for m in results["current"]]
        ratios = [c / b for c, b in zip(cur, base, strict=True) if b]
        print(f"| {label} | {statistics.median(base):.1f} | {statistics.median(cur):.1f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
