"""This registry side by side with CNCF Distribution on the same machine.

    .venv/bin/python bench/compare.py           # full: 3 runs, 15 s loads (~14 min, 2 cores)
    .venv/bin/python bench/compare.py --quick   # 2 runs, 2 s loads, no 2 GiB push (~4 min)

Needs (Debian): apt-get install docker-registry wrk apache2-utils
It installs nothing. Each run starts both registries on free ports with empty
temporary storage and takes every step (pushes, pulls, request loads, listings,
flows) against one and then the other, the order alternating run by run. The
Markdown table goes into the generated block of docs/performance.md (--no-write:
print only; --json FILE: raw numbers too; --render FILE: redo the table only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import machine, report  # noqa: E402
from bench.data import Dataset, zero_blob  # noqa: E402
from bench.loads import Suite, push_peaks, run_interleaved  # noqa: E402
from bench.servers import (  # noqa: E402
    DISTRIBUTION,
    DISTRIBUTION_BIN,
    OURS,
    Registry,
    missing_tools,
    tool_version,
)

MiB = 1 << 20
HEADLINE = ["push_mono", "push_chunked", "pull_1", "get_tag_rps", "catalog_ms",
            "push_flow_s", "peak_rss_mib"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 runs, 2 s loads, no 2 GiB push")
    p.add_argument("--runs", type=int, help="runs per registry (default 3; quick 2)")
    p.add_argument("--seconds", type=float, help="seconds per request load (default 15; quick 2)")
    p.add_argument("--blob-mib", type=int, default=256, help="size of the big blob (256)")
    p.add_argument("--big-mib", type=int,
                   help="also push a blob this big to check memory stays flat (default 2048; "
                        "quick: 0, skipped)")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--no-write", action="store_true", help="print the table, leave docs alone")
    p.add_argument("--json", type=Path, help="also write every run's raw numbers here")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: rebuild the table from a --json file of an earlier run")
    args = p.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 3)
    args.seconds = args.seconds or (2 if args.quick else 15)
    args.big_mib = (0 if args.quick else 2048) if args.big_mib is None else args.big_mib
    return args


def command_line() -> str:
    python = Path(sys.executable)
    try:
        python = python.relative_to(ROOT)
    except ValueError:
        python = Path(python.name)
    return shlex.join([str(python), "bench/compare.py", *sys.argv[1:]])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure_machine(data: Dataset) -> dict[str, float]:
    push, pull = machine.client_ceilings(data.big)
    return {"sha256": machine.sha256_mibps(), "loopback": machine.loopback_mibps(),
            "client_push": push, "client_pull": pull}


def measure_growth(tmp: Path, big_mib: int) -> dict[str, dict[str, float]]:
    blobs = [zero_blob(tmp / "zeros-small", 256 * MiB), zero_blob(tmp / "zeros-big", big_mib * MiB)]
    out = {}
    for kind in (OURS, DISTRIBUTION):
        with Registry(kind, tmp / f"{kind}-grow") as reg:
            small, big = push_peaks(reg, blobs)
        out[kind] = {"peak_small_mib": small, "peak_big_mib": big}
        log(f"{kind}: peak RSS {small:.0f} MiB (256 MiB push), {big:.0f} MiB ({big_mib} MiB)")
    return out


def publish(args: argparse.Namespace, raw: dict) -> list[str]:
    block, missed = report.render(raw["meta"], raw["machine"], raw["results"], raw["growth"],
                                  int(raw["meta"].get("big_mib", 0)))
    print(block)
    if not args.no_write:
        report.write_doc(args.output, block)
        log(f"wrote {args.output}")
    return missed


def remove_later(folder: Path) -> None:
    """Delete the temporary storage in a detached, low-priority process: tens of
    thousands of small files (Distribution keeps its index as a file tree) take
    minutes to unlink on a slow disk, and nothing needs to wait for that."""
    log(f"removing {folder} in the background")
    subprocess.Popen(["nice", "-n", "19", "ionice", "-c", "3", "rm", "-rf", str(folder)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        publish(args, json.loads(args.render.read_text()))
        return 0
    if not Path("/proc/self/smaps_rollup").exists():
        print("needs Linux (/proc/<pid>/stat and smaps_rollup)", file=sys.stderr)
        return 2
    if missing := missing_tools():
        print(f"missing tools; install them with: apt-get install {' '.join(missing)}\n"
              "(docker-registry is CNCF Distribution, wrk and apache2-utils (ab) generate load)",
              file=sys.stderr)
        return 2
    meta = {
        "command": command_line(), "date": time.strftime("%Y-%m-%d %H:%M %Z"), **machine.describe(),
        "runs": str(args.runs), "seconds": f"{args.seconds:g}",
        "distribution": tool_version([DISTRIBUTION_BIN, "--version"]).split()[-1],
        "tools": "wrk " + tool_version(["wrk", "-v"], r"(\d[\w.+-]*)")
                 + ", ApacheBench " + tool_version(["ab", "-V"], r"Version (\S+)"),
    }
    started = time.monotonic()
    results: dict[str, list[dict[str, float]]] = {OURS: [], DISTRIBUTION: []}
    tmp = Path(tempfile.mkdtemp(prefix="regbench-"))
    try:
        log(f"making test content in {tmp}")
        data = Dataset.create(tmp / "content", args.blob_mib, push_clients=8)
        machine_limits = measure_machine(data)
        log("machine: " + ", ".join(f"{k} {v:.0f} MiB/s" for k, v in machine_limits.items()))
        for run in range(args.runs):
            order = (OURS, DISTRIBUTION) if run % 2 == 0 else (DISTRIBUTION, OURS)
            with contextlib.ExitStack() as stack:
                suites = [Suite(stack.enter_context(Registry(kind, tmp / f"{kind}-{run}")),
                                data, args.seconds) for kind in order]
                run_interleaved(suites)
                for suite in suites:
                    m = suite.finish()
                    results[suite.reg.kind].append(m)
                    log(f"run {run + 1}/{args.runs} {suite.reg.kind:12} "
                        + " ".join(f"{k}={m[k]:.1f}" for k in HEADLINE)
                        + "; step seconds: " + " ".join(
                            f"{k[5:-2]} {v:.0f}" for k, v in m.items() if k.startswith("time_")))
        growth = measure_growth(tmp, args.big_mib) if args.big_mib else {}
    finally:
        remove_later(tmp)
    meta["elapsed"] = f"{(time.monotonic() - started) / 60:.1f} min"
    meta["big_mib"] = str(args.big_mib)
    meta["loadavg_end"] = machine.describe()["loadavg"]
    procs = int(max(r["processes"] for r in results[OURS]))
    meta["ours"] = f"gunicorn master + {procs - 1} worker processes"
    raw = {"meta": meta, "machine": machine_limits, "results": results, "growth": growth}
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    missed = publish(args, raw)
    for key in HEADLINE:
        ratios = [o[key] / d[key] for o, d in zip(results[OURS], results[DISTRIBUTION],
                                                  strict=True)]
        log(f"{key}: ours/distribution median {statistics.median(ratios):.2f}x")
    log(f"done in {meta['elapsed']}; targets missed: {len(missed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
