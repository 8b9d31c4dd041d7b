"""Curves of bench/scale.py: one PNG per measure, x the data set's scale, one line per
registry (median over the runs, the bar from the fastest to the slowest run).

    .venv/bin/python -m bench.scale_plot RESULTS.json [MORE.json ...] [--out docs/performance]
        [--table]

matplotlib is a bench dependency only (pyproject's ``bench`` extra), never the registry's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.scale_results import CASES, medians, stopped, table
from bench.servers import ROOT

TITLES = {
    "head_manifest": "HEAD manifest (by tag)", "tags_first": "tags list, first page (n=100)",
    "tags_last": "tags list, last page (n=100)", "catalog_first": "catalog, first page (n=100)",
    "catalog_last": "catalog, last page (n=100)", "blob_get": "blob GET (small blob)",
    "gc_s": "GC dry run, --delete-untagged, 1 % garbage (process)",
    "gc_work_s": "ours: the GC's own time (no interpreter start)",
    "startup_s": "start-up to /v2/ 200",
    "pss_mib": "memory after start-up (PSS of the process tree)",
}
LOG_Y = {"gc_s", "catalog_last"}
UNITS = {"gc_s": "seconds", "gc_work_s": "seconds", "startup_s": "seconds", "pss_mib": "MiB"}


def plot(samples: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = medians(samples)
    targets = sorted({t for t, _ in rows})
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in [*CASES, "gc_s", "gc_work_s", "startup_s", "pss_mib"]:
        metric = f"{name}.median_ms" if name in CASES else name
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for target in targets:
            points = sorted((s, m[metric]) for (t, s), m in rows.items()
                            if t == target and metric in m)
            if not points:
                continue
            xs = [s for s, _ in points]
            ys = [v[0] for _, v in points]
            err = [[v[0] - v[1] for _, v in points], [v[2] - v[0] for _, v in points]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=target)
            for x, y in zip(xs, ys, strict=True):
                if name == "gc_s" and stopped(samples, target, x):
                    ax.annotate("stopped: at least", (x, y), textcoords="offset points",
                                xytext=(-60, 8), fontsize=7)
                    ax.scatter([x], [y], marker="^", s=80, color="black", zorder=3)
        ax.set_xscale("log")
        ax.set_xticks(sorted({s for _, s in rows}))
        ax.set_xticklabels([f"{s}x" for s in sorted({s for _, s in rows})])
        ax.set_xlabel("data set (1x = 10,000 manifests and tags, 1,000 repositories)")
        ax.set_ylabel(UNITS.get(name, "median ms"))
        if name in LOG_Y:  # Distribution's walk dwarfs the rest: a log axis shows both
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(TITLES[name])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"scale-{name.replace('_', '-')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="bench.scale --json files")
    parser.add_argument("--table", action="store_true", help="print the Markdown table too")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance")
    args = parser.parse_args()
    samples = [s for path in args.results for s in json.loads(path.read_text())]
    for path in plot(samples, args.out):
        print(path)
    if args.table:
        print(table(samples))


if __name__ == "__main__":
    main()
