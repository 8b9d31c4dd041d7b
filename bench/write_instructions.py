"""CPU instructions per small write request (callgrind), this tree against a revision.

    .venv/bin/python bench/write_instructions.py --baseline 14bda63 [--requests 100]
    .venv/bin/python bench/write_instructions.py --cpu [--requests 300]   # CPU µs, no valgrind

The requests of bench/compare.py's set-up ("1,000 manifest PUTs by 8 clients": a
manifest PUT under a new tag; the repositories: a cross-repository mount and a
manifest PUT) and of its push flow (per layer: blob HEAD, upload POST, one PATCH,
the PUT that ends it; the config pushed whole; a 10-layer manifest PUT), each kind
made ``--requests`` times in process through the WSGI callable after 20 uncounted
ones (bench/write_instructions_worker.py; no HTTP server: gunicorn's cost is not in
the figure; the default settings, fsync on). Instruction counts do not move with
the machine's load. The baseline (and ``--current REV``, else the work tree) is
exported with ``git archive`` into a temporary folder. ``--cpu``: CPU seconds of
each process instead (noisy on a busy machine).
Needs valgrind (Debian: valgrind).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.write_instructions_worker import CASES  # noqa: E402

WORKER = Path(__file__).resolve().parent / "write_instructions_worker.py"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", help="git revision to compare with")
    p.add_argument("--current", help="a git revision to measure instead of the work tree")
    p.add_argument("--requests", type=int, default=100, help="counted requests per kind")
    p.add_argument("--jobs", type=int, default=2, help="processes at once")
    p.add_argument("--cases", default="", help="only these kinds (indexes into CASES: 0,1,2)")
    p.add_argument("--cpu", action="store_true", help="CPU µs per request, no valgrind")
    return p.parse_args(argv)


def measure(tree: Path, data: Path, case: int, args: argparse.Namespace, tmp: Path,
            label: str) -> float:
    work = tmp / f"data.{label}.{case}"
    shutil.copytree(data, work)
    worker = [sys.executable, str(WORKER)]
    if args.cpu:
        out = subprocess.run([*worker, "cpu", str(tree), str(work), str(args.requests),
                              str(case)], check=True, capture_output=True, text=True)
        return float(out.stdout.split()[-1]) * 1e6
    out_file = tmp / f"cg.{label}.{case}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=*qsort*",
         f"--callgrind-out-file={out_file}", *worker, "run", str(tree), str(work),
         str(args.requests), str(case)], check=True, capture_output=True)
    totals = [line for line in out_file.read_text().splitlines() if line.startswith("totals:")]
    return int(totals[-1].split()[1]) / args.requests


def export(revision: str, folder: Path) -> Path:
    """``revision``'s src/ in ``folder`` (git archive: no work tree, no checkout)."""
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="write-instructions-"))
    builds = {"current": ROOT}
    try:
        if args.baseline:
            builds = {"baseline": export(args.baseline, tmp / "baseline"), **builds}
        if args.current:
            builds["current"] = export(args.current, tmp / "current")
        data = tmp / "data"
        subprocess.run([sys.executable, str(WORKER), "fill", str(ROOT), str(data)], check=True)
        cases = [int(c) for c in args.cases.split(",")] if args.cases else range(len(CASES))
        jobs = [(label, case) for case in cases for label in builds]
        with ThreadPoolExecutor(args.jobs) as pool:
            counts = dict(zip(jobs, pool.map(
                lambda job: measure(builds[job[0]], data, job[1], args, tmp, job[0]), jobs),
                strict=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    unit = "CPU µs" if args.cpu else "instructions"
    print(f"\n{unit} per request (in process, {args.requests} requests)"
          + (f", current tree vs {args.baseline}" if args.baseline else "") + "\n")
    if "baseline" in builds:
        print("| request | baseline | current | current ÷ baseline |\n| --- | --: | --: | --: |")
    else:
        print(f"| request | {unit} |\n| --- | --: |")
    for case, name in enumerate(CASES):
        if ("current", case) not in counts:
            continue
        cur = counts[("current", case)]
        if "baseline" in builds:
            base_n = counts[("baseline", case)]
            print(f"| {name} | {base_n:,.0f} | {cur:,.0f} | {cur / base_n:.2f} |")
        else:
            print(f"| {name} | {cur:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
