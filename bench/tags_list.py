"""The tags list of 1,000 tags: ours (this tree, and optionally an earlier revision)
against CNCF Distribution, alternating, run after run.

    .venv/bin/python bench/tags_list.py [--baseline REV] [--runs 3] [--repeat 30]

Each run starts every registry fresh, tags one config-only image 1,000 times (8
clients, as bench/loads.py does), then on one kept-alive connection reads the
whole list in one request (no ``n``, what bench/compare.py's "tags list" row
times) ``--repeat`` times, and walks it by pages of 100 (``n``/``last``,
following Link) ``--repeat // 5`` times. Reported per run: the median wall time
of one whole-list request and of one walk, and the server's CPU (its whole
process tree) per whole-list request; then the median over the runs of each
figure and of the per-run ratios ours ÷ Distribution (what to quote: both saw the
same moment of the machine), the p99 of the whole-list requests, and how many pages
one walk took (a registry that ignores ``n`` answers the walk in one page).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.client import Client  # noqa: E402
from bench.compare import log, remove_later  # noqa: E402
from bench.data import DOCKER_MANIFEST, make_image  # noqa: E402
from bench.loads import LISTED, SETUP_CLIENTS, parallel, push_image  # noqa: E402
from bench.proctree import tree_cpu_seconds  # noqa: E402
from bench.servers import DISTRIBUTION, OURS, ROOT, Registry  # noqa: E402

REPO = "bench/tags"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", help="also an earlier revision of ours (git rev)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--repeat", type=int, default=100, help="whole-list requests per run")
    return p.parse_args(argv)


def fill(url: str, image: object) -> None:
    c = Client(url)
    push_image(c, REPO, image, "t0000")  # type: ignore[arg-type]
    c.close()
    per = LISTED // SETUP_CLIENTS

    def tag(i: int) -> None:
        tc = Client(url)
        for k in range(i * per, (i + 1) * per):
            tc.put_manifest(REPO, f"t{k:04d}", image.manifest, DOCKER_MANIFEST)  # type: ignore[attr-defined]
        tc.close()

    parallel(SETUP_CLIENTS, tag)


def measure(reg: Registry, repeat: int) -> dict[str, float]:
    c = Client(reg.url)
    path = f"/v2/{REPO}/tags/list"
    for _ in range(10):  # warm the workers up
        c.request("GET", path).expect(200)
    times = []
    cpu0 = tree_cpu_seconds(reg.proc.pid)  # type: ignore[union-attr]
    for _ in range(repeat):
        t0 = time.perf_counter()
        reply = c.request("GET", path).expect(200)
        tags = json.loads(reply.body)["tags"]
        times.append(time.perf_counter() - t0)
        if len(tags) < LISTED:
            raise RuntimeError(f"{reg.label}: {len(tags)} tags")
    cpu = (tree_cpu_seconds(reg.proc.pid) - cpu0) / repeat  # type: ignore[union-attr]
    walks, pages = [], 0
    for _ in range(max(1, repeat // 5)):
        t0, page, seen, pages = time.perf_counter(), f"{path}?n=100", 0, 0
        while page:
            reply = c.request("GET", page).expect(200)
            seen += len(json.loads(reply.body)["tags"])
            pages += 1
            link = reply.headers.get("Link")
            page = link[1:link.index(">")] if link else ""
        walks.append(time.perf_counter() - t0)
        if seen < LISTED:
            raise RuntimeError(f"{reg.label}: walk saw {seen} tags")
    c.close()
    times.sort()
    return {"whole_ms": statistics.median(times) * 1000, "cpu_us": cpu * 1e6,
            "whole_p99_ms": times[min(len(times) - 1, len(times) * 99 // 100)] * 1000,
            "walk_ms": statistics.median(walks) * 1000, "walk_pages": pages}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tags-"))
    image = make_image(tmp / "tiny", 300, [])
    builds = [(DISTRIBUTION, ROOT, DISTRIBUTION), (OURS, ROOT, "ours")]
    if args.baseline:
        base = tmp / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(base), args.baseline], check=True)
        builds.append((OURS, base, f"ours@{args.baseline}"))
    results: dict[str, list[dict[str, float]]] = {label: [] for _, _, label in builds}
    try:
        for run in range(args.runs):
            order = builds if run % 2 == 0 else builds[::-1]
            for kind, source, label in order:
                with Registry(kind, tmp / f"{run}-{label}", source=source, label=label) as reg:
                    fill(reg.url, image)
                    results[label].append(measure(reg, args.repeat))
                log(f"run {run + 1} {label}: {results[label][-1]}")
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tmp / "baseline")], check=False)
        with contextlib.suppress(Exception):
            remove_later(tmp)
    dist = results[DISTRIBUTION]
    print("| build | whole list ms | ÷ Distribution | CPU µs/request | ÷ Distribution "
          "| whole list p99 ms | ÷ Distribution | walk n=100 ms | ÷ Distribution |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for _, _, label in builds:
        cells = [label]
        for key in ("whole_ms", "cpu_us", "whole_p99_ms", "walk_ms"):
            values = [r[key] for r in results[label]]
            ratios = [r[key] / d[key] for r, d in zip(results[label], dist, strict=True)]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
            cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})")
        print("| " + " | ".join(cells) + " |")
    # Pages one walk of n=100 took: 10 where n is honoured (Distribution 2.8 ignores it).
    print("walk pages: " + ", ".join(f"{label} {results[label][-1]['walk_pages']:.0f}"
                                     for _, _, label in builds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
