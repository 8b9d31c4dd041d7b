"""Reading bench/scale.py's samples: medians with their spread, GCs stopped at the
timeout, the Markdown table. Shared by scale.py (its summary) and scale_plot.py."""

from __future__ import annotations

import statistics

CASES = ("head_manifest", "tags_first", "tags_last", "catalog_first", "catalog_last",
         "blob_get")


def medians(samples: list[dict]) -> dict[tuple[str, int], dict[str, tuple[float, float, float]]]:
    """(target, scale) -> metric -> (median, min, max) over the runs."""
    out: dict = {}
    for key in sorted({(s["target"], s["scale"]) for s in samples}):
        runs = [s for s in samples if (s["target"], s["scale"]) == key]
        metrics: dict = {}
        for name in ("startup_s", "rss_mib", "pss_mib", "gc_s", "gc_work_s"):
            values = [r[name] for r in runs if name in r]
            if values:
                metrics[name] = (statistics.median(values), min(values), max(values))
        for case in CASES:
            for part in ("median_ms", "p99_ms", "cpu_ms"):
                values = [r[case][part] for r in runs if case in r]
                if values:
                    metrics[f"{case}.{part}"] = (statistics.median(values), min(values),
                                                  max(values))
        out[key] = metrics
    return out


def stopped(samples: list[dict], target: str, scale: int) -> bool:
    """Whether a GC of this target and scale was stopped at the timeout (a lower bound)."""
    return any(s.get("gc_stopped_at_timeout") for s in samples
               if (s["target"], s["scale"]) == (target, scale))


def table(samples: list[dict]) -> str:
    rows = medians(samples)
    names = sorted({n for m in rows.values() for n in m})
    header = "| metric | " + " | ".join(f"{t} {s}x" for t, s in rows) + " |"
    lines = [header, "|" + " --- |" * (len(rows) + 1)]
    for name in names:
        cells = []
        for key in rows:
            value = rows[key].get(name)
            at_least = "≥ " if name == "gc_s" and stopped(samples, *key) else ""
            cells.append("" if value is None else
                         f"{at_least}{value[0]:.3g} ({value[1]:.3g}–{value[2]:.3g})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
