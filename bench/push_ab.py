"""Big pushes, this tree against an earlier revision, interleaved start by start.

    .venv/bin/python bench/push_ab.py --baseline REV [--rounds 3] [--reps 3]
                                      [--kinds mono,chunked,x4,pull] [--blob-mib 256]

bench/push_ratio.py takes one push of each kind per build and run; on a busy machine
one push is one sample of a few seconds, and its ratios move with whatever else ran
then. This one starts each build fresh ``--rounds`` times, alternating (baseline,
tree, baseline, tree, ...), pushes ``--reps`` times of each kind per start (256 MiB
monolithic, 256 MiB in 8 MiB PATCHes, 4 × 64 MiB at once; ``pull`` then GETs the
blob of that rep's monolithic push, as bench/compare.py pulls after its pushes),
and prints each start's medians of MiB/s and of the whole process tree's CPU per
MiB (from /proc), then the medians over the starts. The figures in
docs/performance.md's "Pushes, round two" and "round three" come from this.
BENCH_OURS_OCIREGISTRY_X=v sets a setting for both builds, BENCH_TREE_X=v an
environment variable for this tree's only (bench/servers.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.client import Client  # noqa: E402
from bench.data import make_blob  # noqa: E402
from bench.loads import parallel  # noqa: E402
from bench.proctree import MiB  # noqa: E402
from bench.servers import OURS, ROOT, Registry  # noqa: E402

KINDS = ("mono", "chunked", "x4", "pull")


def one_start(source: Path, workdir: Path, blobs: dict, kinds: list[str], reps: int,
              start: int) -> dict[str, tuple[float, float]]:
    """Medians (MiB/s, CPU ms/MiB) of ``reps`` pushes of each kind on a fresh server."""
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    with Registry(OURS, workdir, source=source, label=source.name) as reg:
        for rep in range(reps):
            for kind in kinds:
                with reg.monitor.phase() as phase:
                    if kind == "x4":
                        def quarter(i: int, rep: int = rep) -> None:
                            c, blob = Client(reg.url), blobs["quarters"][i]
                            with open(blob.path, "rb") as f:
                                c.push_monolithic(f"ab/q{start}-{rep}-{i}", f, blob.size,
                                                  blob.digest)
                            c.close()

                        parallel(4, quarter)
                        size = sum(b.size for b in blobs["quarters"])
                    elif kind == "pull":
                        # The blob this rep's monolithic push just stored, as compare.py
                        # pulls it after its pushes (from the page cache, if read back).
                        c, blob = Client(reg.url), blobs["mono"][rep % len(blobs["mono"])]
                        c.pull_blob(f"ab/mono{start}-{rep}", blob.digest, blob.size)
                        c.close()
                        size = blob.size
                    else:
                        c = Client(reg.url)
                        blob = (blobs["mono"][rep % len(blobs["mono"])] if kind == "mono"
                                else blobs["big"])
                        push = c.push_monolithic if kind == "mono" else c.push_chunked
                        with open(blob.path, "rb") as f:
                            push(f"ab/{kind}{start}-{rep}", f, blob.size, blob.digest)
                        c.close()
                        size = blob.size
                samples[kind].append((size / MiB / phase.wall,
                                      phase.cpu * 1000 / (size / MiB)))
    return {k: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v))
            for k, v in samples.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--blob-mib", type=int, default=256)
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if not set(kinds) <= set(KINDS):
        p.error(f"--kinds: choose from {', '.join(KINDS)}")
    if "pull" in kinds and ("mono" not in kinds or kinds.index("pull") < kinds.index("mono")):
        p.error("--kinds: pull reads the blob of the monolithic push before it")
    tmp = Path(tempfile.mkdtemp(prefix="push-ab-"))
    try:
        base = tmp / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "src",
                                  "app.py"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        size = args.blob_mib * MiB
        # A blob of its own per monolithic push (so that "pull" reads what that push
        # wrote, not an earlier copy); chunked pushes send another one.
        blobs = {"big": make_blob(tmp / "big", size, 1),
                 "mono": [make_blob(tmp / f"mono{i}", size, 100 + i) for i in range(args.reps)]
                 if "mono" in kinds else [],
                 "quarters": [make_blob(tmp / f"q{i}", size // 4, 10 + i) for i in range(4)]}
        builds = [("baseline", base), ("tree", ROOT)]
        results: dict[str, list[dict[str, tuple[float, float]]]] = {b: [] for b, _ in builds}
        for start in range(args.rounds):
            for label, source in builds:
                got = one_start(source, tmp / f"{label}-{start}", blobs, kinds, args.reps,
                                start)
                results[label].append(got)
                subprocess.run(["rm", "-rf", str(tmp / f"{label}-{start}")], check=False)
                print(f"start {start + 1} {label:8s} " + "  ".join(
                    f"{k} {got[k][0]:,.0f} MiB/s {got[k][1]:.2f} ms/MiB" for k in kinds),
                    f" load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    print(f"\n{args.rounds} starts each, {args.reps} pushes of each kind per start, "
          f"{args.blob_mib} MiB; medians over the starts (baseline {args.baseline} → tree)")
    for kind in kinds:
        rates = [statistics.median(r[kind][0] for r in results[b]) for b, _ in builds]
        cpus = [statistics.median(r[kind][1] for r in results[b]) for b, _ in builds]
        lower = sum(t[kind][1] <= b[kind][1]
                    for b, t in zip(results["baseline"], results["tree"], strict=True))
        print(f"{kind:8s} MiB/s {rates[0]:,.0f} → {rates[1]:,.0f}   CPU ms/MiB {cpus[0]:.2f} → "
              f"{cpus[1]:.2f} (tree lower or equal in {lower} of {args.rounds} starts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
