"""Big blob pushes only: ours next to Distribution 2.8.2 (and an earlier revision of ours).

    .venv/bin/python bench/push_ratio.py [--runs 5] [--blob-mib 256] [--baseline REV]

The push step of bench/compare.py (256 MiB monolithic, 256 MiB in 8 MiB PATCHes,
4 concurrent 64 MiB monolithic pushes), without the rest of the harness, so that
more runs fit in the same minutes. Each run starts fresh instances (the defaults,
as servers.py starts them), takes each push against every registry in turn
(alternating which goes first run by run) and records MiB/s and the whole process
tree's CPU per MiB (from /proc). Prints medians (min–max) and ours ÷ Distribution
per run, next to one core's SHA-256 rate (the issue's "≥ 50 % of SHA-256" goal).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.data import Dataset  # noqa: E402
from bench.loads import Suite  # noqa: E402
from bench.proctree import MiB  # noqa: E402
from bench.push_cpu import sha256_ms_per_mib  # noqa: E402
from bench.servers import DISTRIBUTION, OURS, ROOT, Registry  # noqa: E402

MEASURES = [("push_mono", "256 MiB monolithic"), ("push_chunked", "256 MiB chunked (8 MiB)"),
            ("push_4x", "4 × 64 MiB at once")]


def run_once(regs: list[Registry], data: Dataset) -> dict[str, dict[str, float]]:
    suites = [Suite(reg, data, 0) for reg in regs]
    for s in suites:
        s.blob_push()
    out = {}
    for s in suites:
        sizes = {"push_mono": data.big.size, "push_chunked": data.big_chunked.size,
                 "push_4x": sum(b.size for b in data.quarter)}
        m = dict(s.m)
        for key, size in sizes.items():
            m[f"{key}_cpu"] = s.phases[key].cpu * 1000 / (size / MiB)
        out[s.reg.label] = m
    return out


def summary(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–" \
           f"{fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--blob-mib", type=int, default=256)
    p.add_argument("--baseline", help="also run this git revision of ours")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="push-ratio-"))
    kinds = [(OURS, "ours", ROOT), (DISTRIBUTION, DISTRIBUTION, ROOT)]
    if args.baseline:
        base = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(base), args.baseline], check=True)
        kinds.append((OURS, "baseline", base))
    runs: list[dict[str, dict[str, float]]] = []
    try:
        data = Dataset.create(tmp / "content", args.blob_mib, push_clients=1)
        sha = statistics.median(sha256_ms_per_mib() for _ in range(3))
        for run in range(args.runs):
            order = kinds if run % 2 == 0 else list(reversed(kinds))
            with contextlib.ExitStack() as stack:
                regs = [stack.enter_context(Registry(kind, tmp / f"{label}-{run}", source=src,
                                                     label=label))
                        for kind, label, src in order]
                runs.append(run_once(regs, data))
            print(f"run {run + 1}/{args.runs}: " + ", ".join(
                f"{label} {runs[-1][label]['push_mono']:.0f}/"
                f"{runs[-1][label]['push_chunked']:.0f}/{runs[-1][label]['push_4x']:.0f}"
                for _, label, _ in kinds) + " MiB/s", file=sys.stderr)
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tmp / "baseline")], check=False)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    labels = [label for _, label, _ in kinds]
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')} UTC, {args.runs} runs, {args.blob_mib} MiB, "
          f"load {os.getloadavg()[0]:.1f}; SHA-256 one core {sha:.2f} ms/MiB "
          f"({1000 / sha:,.0f} MiB/s, half: {500 / sha:,.0f})")
    print("| measure | " + " | ".join(labels) + " | ours ÷ distribution per run |"
          + (" ours ÷ baseline |" if args.baseline else ""))
    print("| --- |" + " --: |" * len(labels) + " --: |" + (" --: |" if args.baseline else ""))
    for key, name in MEASURES:
        for suffix, unit, fmt in (("", "MiB/s", "{:,.0f}"), ("_cpu", "CPU ms/MiB", "{:.2f}")):
            k = key + suffix
            row = f"| {name}, {unit} | " + " | ".join(
                summary([r[label][k] for r in runs], fmt) for label in labels)
            row += " | " + summary([r["ours"][k] / r[DISTRIBUTION][k] for r in runs], "{:.2f}")
            if args.baseline:
                row += " | " + summary([r["ours"][k] / r["baseline"][k] for r in runs], "{:.2f}")
            print(row + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
