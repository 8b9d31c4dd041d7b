"""Medians, min–max, per-run ratios, targets, and the Markdown of docs/performance.md.

Every ratio is ours ÷ Distribution of the same run (runs alternate which registry
goes first), so "≥ 3×" on MiB/s means three times faster and "≤ 0.2×" on
milliseconds means five times faster.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.servers import DISTRIBUTION, OURS

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Metric:
    key: str
    label: str
    unit: str
    target: tuple[str, float] | None = None  # (">=" | "<=", ratio)


def _loads() -> list[Metric]:
    out = []
    for key, label in [("head_tag", "manifest HEAD by tag (ab)"),
                       ("get_tag", "manifest GET by tag"),
                       ("get_digest", "manifest GET by digest"),
                       ("get_blob", "1 KiB blob GET"), ("get_base", "GET /v2/")]:
        out += [Metric(f"{key}_rps", label, "req/s", (">=", 2.0)),
                Metric(f"{key}_p99", f"{label}: p99", "ms", ("<=", 1.0))]
    return out


SECTIONS: list[tuple[str, list[Metric]]] = [
    ("1. Blob push", [
        Metric("push_mono", "256 MiB, monolithic (POST + PUT)", "MiB/s", (">=", 3.0)),
        Metric("push_chunked", "256 MiB, chunked (8 MiB PATCHes)", "MiB/s", (">=", 3.0)),
        Metric("push_4x", "4 concurrent 64 MiB pushes, aggregate", "MiB/s"),
    ]),
    ("2. Blob pull", [
        Metric("pull_1", "256 MiB, one stream", "MiB/s", (">=", 1.0)),
        Metric("pull_8", "256 MiB, 8 concurrent streams, aggregate", "MiB/s", (">=", 1.0)),
        Metric("range_ms", "1 MiB Range GET, median latency", "ms", ("<=", 1.0)),
    ]),
    ("3. Requests under load (32 connections)", _loads()),
    ("4. Listings", [
        Metric("tags_ms", "tags list, 1,000 tags (all pages)", "ms", ("<=", 0.2)),
        Metric("catalog_ms", "catalog walk, 1,000 repositories, n=100", "ms", ("<=", 0.2)),
        Metric("tag_puts_s", "set-up: 1,000 manifest PUTs by 8 clients", "s"),
        Metric("repo_puts_s", "set-up: 1,000 repositories (mount + manifest PUT), 8 clients",
               "s", ("<=", 0.7)),
    ]),
    ("5. Client flows", [
        Metric("pull_flow_s", "pull flow: 16 clients × one 10-layer image", "s", ("<=", 1.0)),
        Metric("push_flow_s", "push flow: 8 clients × a distinct 10-layer image", "s",
               ("<=", 0.5)),
    ]),
    ("6. Registry resources (whole process tree)", [
        Metric("peak_rss_mib", "peak memory, RSS summed over the tree", "MiB", ("<=", 1.5)),
        Metric("peak_pss_mib", "peak memory, PSS summed (shared pages split)", "MiB"),
        Metric("push_peak_mib", "peak RSS during the blob pushes", "MiB"),
        Metric("cpu_push_ms", "CPU per MiB pushed (all blob pushes)", "ms"),
        Metric("cpu_pull_ms", "CPU per MiB pulled (all blob pulls)", "ms"),
        *[Metric(f"{k}_cpu_us", f"CPU per request: {label}", "µs") for k, label in [
            ("head_tag", "manifest HEAD"), ("get_tag", "manifest GET by tag"),
            ("get_digest", "manifest GET by digest"), ("get_blob", "1 KiB blob GET"),
            ("get_base", "GET /v2/")]],
    ]),
]


def fmt(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def spread(values: list[float], suffix: str = "") -> str:
    mid = fmt(statistics.median(values)) + suffix
    if len(values) < 2:
        return mid
    return f"{mid} ({fmt(min(values))}–{fmt(max(values))})"


def verdict(metric: Metric, ratio: float) -> tuple[str, str]:
    if not metric.target:
        return "", ""
    op, want = metric.target
    met = ratio >= want if op == ">=" else ratio <= want
    return f"{'≥' if op == '>=' else '≤'} {want:g}×", "met" if met else "**missed**"


def results_table(results: dict[str, list[dict[str, float]]]) -> tuple[str, list[str]]:
    """The side-by-side table, and the labels of the missed targets."""
    lines, missed = [], []
    head = ("| Measure | Unit | Ours: median (min–max) | Distribution | Ours ÷ Distribution"
            " per run | Target | Verdict |")
    for title, metrics in SECTIONS:
        lines += ["", f"**{title}**", "", head, "|---|---|--:|--:|--:|:-:|:-:|"]
        for m in metrics:
            if any(m.key not in r for r in results[OURS] + results[DISTRIBUTION]):
                continue  # a --render of numbers from before the metric existed
            ours = [r[m.key] for r in results[OURS]]
            dist = [r[m.key] for r in results[DISTRIBUTION]]
            ratios = [o / d for o, d in zip(ours, dist, strict=True) if d]
            target, met = verdict(m, statistics.median(ratios)) if ratios else ("", "")
            if met.endswith("**"):
                missed.append(f"{title[3:]}: {m.label}")
            lines.append(f"| {m.label} | {m.unit} | {spread(ours)} | {spread(dist)} | "
                         f"{spread(ratios, '×') if ratios else '–'} | {target} | {met} |")
    return "\n".join(lines), missed


def flatness_table(big: dict[str, dict[str, float]], big_mib: int) -> str:
    lines = ["| Registry | peak RSS, 256 MiB push | peak RSS, "
             f"{big_mib} MiB push | Growth | Verdict (flat: ≤ +10 %) |", "|---|--:|--:|--:|:-:|"]
    for kind, row in big.items():
        small, large = row["peak_small_mib"], row["peak_big_mib"]
        flat = "met" if large <= small * 1.10 else "**missed**"
        lines.append(f"| {kind} | {fmt(small)} MiB | {fmt(large)} MiB | "
                     f"{fmt(large - small)} MiB | {flat if kind == OURS else ''} |")
    return "\n".join(lines)


def render(meta: dict[str, str], machine: dict[str, float],
           results: dict[str, list[dict[str, float]]],
           big: dict[str, dict[str, float]], big_mib: int) -> tuple[str, list[str]]:
    table, missed = results_table(results)
    if big and any(r["peak_big_mib"] > r["peak_small_mib"] * 1.10 for k, r in big.items()
                   if k == OURS):
        missed.append(f"peak memory flat as the blob grows to {big_mib} MiB")
    parts = [
        BEGIN,
        "Generated by the harness; do not edit by hand between the markers.",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}  ",
        f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['memory']} memory, "
        f"Linux {meta['kernel']}, Python {meta['python']}; load average (1, 5, 15 min) "
        f"{meta['loadavg']} at the start, {meta.get('loadavg_end', '?')} at the end  ",
        f"Ours: `python app.py` with its defaults ({meta['ours']}); CNCF Distribution "
        f"{meta['distribution']} (Debian `docker-registry`)  ",
        f"Runs: {meta['runs']} per registry, alternating which goes first; request loads "
        f"{meta['seconds']} s each; load generators {meta['tools']}; "
        f"the whole harness took {meta['elapsed']}",
        "",
        "Machine limits for context: "
        f"SHA-256 {fmt(machine['sha256'])} MiB/s (one core, hashlib); "
        f"TCP loopback {fmt(machine['loopback'])} MiB/s; "
        f"benchmark client against a null server: push {fmt(machine['client_push'])} MiB/s, "
        f"pull {fmt(machine['client_pull'])} MiB/s.",
        table,
    ]
    if big:
        parts += ["", f"**Memory as the blob grows** (one fresh instance each, a 256 MiB then "
                  f"a {big_mib} MiB monolithic push)", "", flatness_table(big, big_mib)]
    parts += ["", "Targets missed: " + ("; ".join(missed) if missed else "none") + ".", END]
    return "\n".join(parts) + "\n", missed


def write_doc(path: Path, block: str) -> None:
    """Replace the generated block of the document, keeping the hand-written rest."""
    if path.exists() and BEGIN in (text := path.read_text()):
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?",
                      lambda _: block, text, flags=re.S)
    else:
        text = ("# Performance\n\nThis registry side by side with CNCF Distribution on the "
                "same machine, measured by `bench/compare.py` (see bench/README.md).\n\n"
                + block + "\n## What limits us\n\n(Analysis of each missed target goes here.)\n")
    path.write_text(text)
