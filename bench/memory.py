"""Peak memory of the whole process tree: this registry against CNCF Distribution.

    .venv/bin/python bench/memory.py                      # 3 runs, 5 s loads, 64 MiB blobs
    .venv/bin/python bench/memory.py --baseline REV       # and the tree of git revision REV
    .venv/bin/python bench/memory.py --runs 1 --seconds 1 --blob-mib 16   # a smoke run

Each run starts every registry fresh (ours: `python app.py` with its defaults, as
bench/compare.py does; Distribution 2.8.2 with the Debian package's config) and
takes it through bench/compare.py's steps (blob pushes and pulls, the request
loads, the listings of 1,000 tags and repositories, the pull and push flows),
one registry after the other, the order alternating run by run. The tree is
sampled every 50 ms (bench/proctree.py): peak RSS summed over the processes
(what the issue's goal counts; a page shared by gunicorn's forked processes
counts once per process) and peak PSS (shared pages split between them). For
ours it also prints RSS and PSS of each process (master, workers) idle and at
the end. Reported: median (min–max) of each, and ours ÷ Distribution per run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.data import Dataset  # noqa: E402
from bench.loads import STEPS, Suite  # noqa: E402
from bench.proctree import MiB, _rss_pss, tree_pids  # noqa: E402
from bench.servers import DISTRIBUTION, OURS, Registry, missing_tools  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def export_revision(rev: str, dest: Path) -> Path:
    """The files of git revision `rev` under `dest` (git archive: no worktree to clean up)."""
    dest.mkdir(parents=True)
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def per_process(root: int) -> list[tuple[float, float]]:
    """(RSS, PSS) in MiB of each process of the tree, the root (gunicorn's master) first."""
    return [tuple(v / MiB for v in _rss_pss(pid)) for pid in tree_pids(root)]  # type: ignore[misc]


def one_run(label: str, reg: Registry, data: Dataset, seconds: float) -> dict[str, float]:
    assert reg.proc is not None and reg.monitor is not None
    idle = per_process(reg.proc.pid)
    suite = Suite(reg, data, seconds)
    for step in STEPS:
        suite.step(step)
    m = suite.finish()
    end = per_process(reg.proc.pid)
    out = {"peak_rss": m["peak_rss_mib"], "peak_pss": m["peak_pss_mib"],
           "idle_rss": sum(r for r, _ in idle), "idle_pss": sum(p for _, p in idle),
           "processes": m["processes"]}
    phases = {name: ph.peak_rss / MiB for name, ph in suite.phases.items()}
    log(f"{label}: the highest phase peaks: " + ", ".join(
        f"{k} {v:.0f}" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])[:4]))
    if reg.kind == OURS:
        out["master_rss_idle"], out["master_pss_idle"] = idle[0]
        out["worker_rss_idle"] = statistics.mean(r for r, _ in idle[1:]) if idle[1:] else 0
        out["worker_rss_end"] = statistics.mean(r for r, _ in end[1:]) if end[1:] else 0
        out["worker_pss_end"] = statistics.mean(p for _, p in end[1:]) if end[1:] else 0
    log(f"{label}: " + ", ".join(f"{k} {v:,.1f}" for k, v in out.items()))
    return out


def spread(values: list[float]) -> str:
    def f(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    return f"{f(statistics.median(values))} ({f(min(values))}–{f(max(values))})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5, help="seconds per request load (5)")
    p.add_argument("--blob-mib", type=int, default=64, help="size of the big blob (64)")
    p.add_argument("--baseline", help="git revision of ours to measure as well")
    p.add_argument("--revision", help="measure this git revision as ours (default: this tree, "
                                      "edits included)")
    p.add_argument("--no-distribution", action="store_true", help="ours (and baseline) only")
    args = p.parse_args(argv)
    if missing := missing_tools():
        print(f"missing tools: apt-get install {' '.join(missing)}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="membench-"))
    ours = export_revision(args.revision, tmp / "ours") if args.revision else ROOT
    builds: dict[str, tuple[str, Path]] = {"ours": (OURS, ours)}
    if args.baseline:
        builds[args.baseline] = (OURS, export_revision(args.baseline, tmp / "baseline"))
    if not args.no_distribution:
        builds["distribution"] = (DISTRIBUTION, ROOT)
    results: dict[str, list[dict[str, float]]] = {label: [] for label in builds}
    try:
        data = Dataset.create(tmp / "content", args.blob_mib, push_clients=8)
        for run in range(args.runs):
            order = list(builds) if run % 2 == 0 else list(reversed(builds))
            for label in order:
                kind, source = builds[label]
                with Registry(kind, tmp / f"{label}-{run}", source=source, label=label) as reg:
                    results[label].append(one_run(f"run {run + 1} {label}", reg, data,
                                                  args.seconds))
                with contextlib.suppress(OSError):
                    shutil.rmtree(tmp / f"{label}-{run}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.runs} runs, {args.seconds:g} s loads, {args.blob_mib} MiB blobs; "
          "median (min–max), MiB\n")
    print("| build | processes | idle RSS | idle PSS | peak RSS | peak PSS |")
    print("|---|--:|--:|--:|--:|--:|")
    for label, ms in results.items():
        print(f"| {label} | {ms[0]['processes']:.0f} | " + " | ".join(
            spread([m[k] for m in ms]) for k in ("idle_rss", "idle_pss", "peak_rss", "peak_pss"))
            + " |")
    if "distribution" in results:
        print("\n| build ÷ distribution, per run | peak RSS | peak PSS |\n|---|--:|--:|")
        for label, ms in results.items():
            if label == "distribution":
                continue
            cells = [spread([m[k] / d[k] for m, d in zip(ms, results["distribution"],
                                                         strict=True)])
                     for k in ("peak_rss", "peak_pss")]
            print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n| build | master RSS idle | master PSS idle | worker RSS idle | worker RSS end "
          "| worker PSS end |\n|---|--:|--:|--:|--:|--:|")
    for label, ms in results.items():
        if label != "distribution":
            print(f"| {label} | " + " | ".join(spread([m[k] for m in ms]) for k in (
                "master_rss_idle", "master_pss_idle", "worker_rss_idle", "worker_rss_end",
                "worker_pss_end")) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
