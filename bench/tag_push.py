"""Did tag history and tag rules make manifest PUT slower? This tree against an
earlier revision, same run.

    .venv/bin/python bench/tag_push.py --baseline 6c210a8 [--runs 3] [--seconds 10]

Like bench/hotpaths.py: the baseline revision is checked out into a temporary git
worktree and both builds run (`python app.py`, defaults: SQLite, filesystem) in
alternating order, run after run. On each, `--clients` threads PUT manifests
(blobs pushed beforehand, so only the manifest PUT is timed):

- push: each PUT creates a new tag (a history entry "push");
- move: each PUT moves one tag per client between two digests (history "move";
  the rule check and the per-tag lock on every PUT);
- rules: as move, with 20 immutable and protected rules in the configuration that
  do not match (the cost of reading and matching rules).

Prints PUT/s per build and the median of the per-run ratios current/baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.compare import log, remove_later  # noqa: E402
from bench.servers import OURS, ROOT, Registry  # noqa: E402

MEDIA = "application/vnd.oci.image.manifest.v1+json"
RULES_ENV = "BENCH_OURS_OCIREGISTRY_TAGS__IMMUTABLE"


def _manifests(url: str, repo: str, count: int) -> list[bytes]:
    """``count`` distinct manifests over one small config and layer."""
    s = requests.Session()
    blobs = []
    for data in (b'{"architecture":"amd64","os":"linux"}', os.urandom(1024)):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = s.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data)
        r.raise_for_status()
        blobs.append((digest, len(data)))
    return [json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blobs[0][0], "size": blobs[0][1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blobs[1][0], "size": blobs[1][1]}],
        "annotations": {"n": str(i)},
    }).encode() for i in range(count)]


def _load(url: str, mode: str, clients: int, seconds: float) -> float:
    """PUT/s over ``seconds`` with ``clients`` threads."""
    repo = f"bench/{mode}"
    manifests = _manifests(url, repo, 2 * clients)
    counter = itertools.count()
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        s = requests.Session()
        pair = manifests[2 * i:2 * i + 2]
        for n in itertools.count():
            if time.monotonic() >= stop:
                return
            tag = f"t{next(counter)}" if mode == "push" else f"c{i}"
            r = s.put(f"{url}/v2/{repo}/manifests/{tag}", data=pair[n % 2],
                      headers={"Content-Type": MEDIA})
            r.raise_for_status()
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare with")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--clients", type=int, default=8)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tagpush-"))
    baseline_tree = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                    str(baseline_tree), args.baseline], check=True)
    builds = {"current": ROOT, "baseline": baseline_tree}
    modes = ("push", "move", "rules")
    results: dict[tuple[str, str], list[float]] = {
        (b, m): [] for b in builds for m in modes}
    rules = json.dumps([{"repositories": f"other{i}/**", "tags": "v*"} for i in range(20)])
    try:
        for run in range(args.runs):
            order = list(builds) if run % 2 == 0 else list(reversed(builds))
            for mode in modes:
                for name in order:
                    env = {RULES_ENV: rules} if mode == "rules" and name == "current" else {}
                    with _env(env), contextlib.ExitStack() as stack:
                        reg = stack.enter_context(Registry(
                            OURS, tmp / f"{name}-{run}-{mode}", source=builds[name], label=name))
                        results[(name, mode)].append(
                            _load(reg.url, mode, args.clients, args.seconds))
            log(f"run {run + 1}/{args.runs} done")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(baseline_tree)], check=False)
        remove_later(tmp)
    print(f"\nmanifest PUT, {args.clients} clients, {args.seconds:g} s, {args.runs} "
          f"alternating runs; current vs baseline ({args.baseline})\n")
    print("| load | baseline PUT/s | current PUT/s | current ÷ baseline (median) |")
    print("| --- | --- | --- | --- |")
    for mode in modes:
        base, cur = results[("baseline", mode)], results[("current", mode)]
        ratios = [c / b for c, b in zip(cur, base, strict=True) if b]
        print(f"| {mode} | {statistics.median(base):.0f} | {statistics.median(cur):.0f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
    return 0


@contextlib.contextmanager
def _env(extra: dict[str, str]):  # type: ignore[no-untyped-def]
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    raise SystemExit(main())
