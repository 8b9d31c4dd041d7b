"""CPU instructions per hot request (callgrind), this tree against an earlier revision.

    .venv/bin/python bench/instructions.py --baseline 32d2746 [--requests 200] [--jobs 2]

Instruction counts do not move with the machine's load, unlike req/s or CPU
seconds: the figure to compare on a busy machine. Fills one data directory (one
repository: a manifest under the tag ``latest`` and 1,000 more tags, a 1 KiB blob),
checks the baseline out into a temporary git worktree (each build fills its own
copy: the baseline may not know the newer schema), then for each build and each
request kind runs one process under ``valgrind --tool=callgrind`` that builds the
app (`create_app`, default settings, access log to a file), warms up with 20
requests and makes ``--requests`` more through the WSGI callable in process (no
HTTP server: the server's own cost is not in the figure). Only the loop is counted:
it runs inside libc's qsort comparator (``--collect-atstart=no
--toggle-collect=*qsort*``). Needs valgrind (Debian: valgrind).
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
WORKER = Path(__file__).resolve().parent / "instructions_worker.py"
CASES = ["HEAD manifest by tag", "GET manifest by tag", "GET manifest by digest",
         "HEAD blob", "GET blob (1 KiB)", "GET /v2/", "GET tags/list (1,000 tags)",
         "HEAD blob miss (404)"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare with")
    p.add_argument("--requests", type=int, default=200, help="counted requests per kind")
    p.add_argument("--jobs", type=int, default=2, help="valgrind processes at once")
    p.add_argument("--cases", default="", help="only these kinds (indexes into CASES: 0,6)")
    return p.parse_args(argv)


def measure(tree: Path, data: Path, case: int, requests: int, tmp: Path, label: str) -> int:
    out = tmp / f"cg.{label}.{case}"
    work = tmp / f"work.{label}.{case}"
    shutil.copytree(data, work)
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=*qsort*",
         f"--callgrind-out-file={out}", sys.executable, str(WORKER), "run", str(tree),
         str(work), str(requests), str(case)],
        check=True, capture_output=True)
    totals = [line for line in out.read_text().splitlines() if line.startswith("totals:")]
    return int(totals[-1].split()[1]) // requests


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="instructions-"))
    baseline = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(baseline),
                    args.baseline], check=True)
    try:
        builds = {"baseline": baseline, "current": ROOT}
        # Each build fills its own (the same content): a newer schema would stop the older.
        for label, tree in builds.items():
            subprocess.run([sys.executable, str(WORKER), "fill", str(tree),
                            str(tmp / f"data.{label}")], check=True)
        cases = [int(c) for c in args.cases.split(",")] if args.cases else range(len(CASES))
        jobs = [(label, case) for case in cases for label in builds]
        with ThreadPoolExecutor(args.jobs) as pool:
            counts = dict(zip(jobs, pool.map(
                lambda job: measure(builds[job[0]], tmp / f"data.{job[0]}", job[1], args.requests,
                                    tmp, job[0]),
                jobs), strict=True))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                       check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nInstructions per request (callgrind, in process, {args.requests} requests), "
          f"current tree vs {args.baseline}\n")
    print("| request | baseline | current | current ÷ baseline |")
    print("| --- | --: | --: | --: |")
    for case, name in enumerate(CASES):
        if ("current", case) not in counts:
            continue
        base, cur = counts[("baseline", case)], counts[("current", case)]
        print(f"| {name} | {base:,} | {cur:,} | {cur / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
