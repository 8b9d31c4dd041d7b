"""Scale: does a request cost the same on a registry 10x and 100x bigger?

    .venv/bin/python -m bench.scale --data DIR [--scales 1,10,100] [--dbs sqlite,postgres]
        [--runs 3] [--requests 200] [--budget 60] [--json FILE] [--plot]
        [--no-distribution] [--targets LABEL@SCALE,...] [--gc-only] [--gc-timeout S]
        [--gc-once LABEL@SCALE,...] [--no-gc LABEL@SCALE,...]

DIR holds one ``x<scale>`` folder per scale, made by ``bench.dataset`` (made here
when missing). Each run starts every registry of every size at once (ours on
SQLite, ours on PostgreSQL, each data set with its own PostgreSQL server,
Distribution on the same content), in an order that alternates between runs:

- start-up: each fresh process until ``/v2/`` answers 200, then RSS and PSS of
  its whole process tree (bench/proctree.py);
- latency of HEAD manifest (by tag, over 20 images), the tags list's first and
  last page (``n=100``, the 5 % repository), the catalog's first and last page
  (``n=100``) and a blob GET: after a warm-up, ``--requests`` rounds of one
  keep-alive request to each registry in turn (load from the rest of the machine
  hits every size alike; a registry leaves a case once it has spent ``--budget``
  seconds on it), median and p99, and the server's CPU per request;
- GC, once every server is stopped: ``--dry-run --delete-untagged`` (ours:
  ``ociregistry gc``; Distribution: ``docker-registry garbage-collect``), the
  process's wall time; a dry run finds what a real run deletes and leaves the
  data set as it was for the next run. Ours must find exactly the garbage the
  data set holds (checked). One stopped at ``--gc-timeout`` is a lower bound.

Before the first run each registry serves a few images to skopeo (a check that
the generated content is valid). Results go to ``--json`` (every sample), the
medians are printed, ``--plot`` draws docs/performance/scale-*.png.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import dataset
from bench.proctree import tree_cpu_seconds, tree_memory
from bench.scale_results import CASES, table
from bench.servers import DISTRIBUTION_BIN, DISTRIBUTION_CONFIG, ROOT, free_port

SOURCE = ROOT  # the tree of ours to run (--source: an earlier revision, for before/after)


class Server:
    """One registry process on a free port; ``start`` returns the seconds to ready."""

    def __init__(self, kind: str, data: Path, database_url: str = "") -> None:
        self.kind, self.data, self.database_url = kind, data, database_url
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}
        if self.kind == "distribution":
            config = self.data.parent / f"distribution-{self.port}.yml"
            config.write_text(DISTRIBUTION_CONFIG.format(root=self.data, port=self.port))
            self.config = config
            return [DISTRIBUTION_BIN, "serve", str(config)], env
        env["PYTHONPATH"] = str(SOURCE / "src")
        if self.database_url:
            env["OCIREGISTRY_DATABASE__URL"] = self.database_url
        return [sys.executable, str(SOURCE / "app.py"), "--host", "127.0.0.1", "--port",
                str(self.port), "--data-dir", str(self.data)], env

    def start(self) -> float:
        cmd, env = self.command()
        began = time.perf_counter()
        self.log = open(self.data.parent / f"{self.kind}-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                if conn.getresponse().status == 200:
                    return time.perf_counter() - began
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.kind} not ready in 300 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


def urls(plan: dict, repos: list[str]) -> dict[str, list[tuple[str, str]]]:
    """(method, path) of each case: cycled over by the requests."""
    big_tags = 500 * plan["scale"]
    names = sorted(repos)
    samples = plan["samples"]
    return {
        "head_manifest": [("HEAD", f"/v2/{s['repository']}/manifests/{s['tag']}")
                          for s in samples],
        "tags_first": [("GET", f"/v2/{dataset.BIG}/tags/list?n=100")],
        "tags_last": [("GET", f"/v2/{dataset.BIG}/tags/list?n=100&last=t{big_tags - 101:07d}")],
        "catalog_first": [("GET", "/v2/_catalog?n=100")],
        "catalog_last": [("GET", f"/v2/_catalog?n=100&last={names[-101]}")],
        "blob_get": [("GET", f"/v2/{s['repository']}/blobs/{s['blob']}") for s in samples],
    }


def _one(conn: http.client.HTTPConnection, method: str, path: str) -> None:
    # Distribution answers 404 for an OCI manifest the client does not accept
    conn.request(method, path, headers={"Accept": dataset.OCI_MANIFEST})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {body[:200]!r}")


def gc_seconds(kind: str, data: Path, database_url: str, config: Path | None,
               plan: dict, timeout: float) -> tuple[float, float | None, bool]:
    """The process's wall time, ours's own ``duration_seconds`` (no interpreter start),
    and whether it was stopped at ``timeout`` (the time is then a lower bound; for
    Distribution the second value is then the manifests its mark phase had examined)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}
    if kind == "distribution":
        cmd = [DISTRIBUTION_BIN, "garbage-collect", "--dry-run", "--delete-untagged", str(config)]
    else:
        env["PYTHONPATH"] = str(SOURCE / "src")
        if database_url:
            env["OCIREGISTRY_DATABASE__URL"] = database_url
        cmd = [sys.executable, "-m", "ociregistry", "gc", "--dry-run", "--delete-untagged",
               "--json", "--data-dir", str(data)]
    began = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as stopped:  # run() has killed it
        seconds = time.perf_counter() - began
        if kind == "distribution":  # how far its mark phase got: one line per manifest
            out = stopped.stdout or ""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            examined = sum(1 for line in out.splitlines()
                           if "marking manifest" in line or "eligible for deletion" in line)
            return seconds, float(examined), True
        return seconds, None, True
    seconds = time.perf_counter() - began
    if out.returncode != 0:
        raise RuntimeError(f"{kind} gc failed: {out.stderr[-2000:]}")
    if kind != "distribution":  # it must find the garbage, all of it and nothing else
        result = json.loads(out.stdout[out.stdout.index("{"):])
        garbage = plan["counts"]["garbage_manifests"], plan["counts"]["garbage_blobs"]
        if (result["manifests_deleted"], result["blobs_deleted"]) != garbage:
            raise RuntimeError(f"gc found {result}; the data set's garbage: {garbage}")
        return seconds, result["duration_seconds"], False
    return seconds, None, False


def pull_check(server: Server, plan: dict, count: int = 3) -> None:
    """skopeo pulls a few images (the first, the big repository's last tag, ...)."""
    for sample in plan["samples"][:count - 1] + plan["samples"][-1:]:
        with tempfile.TemporaryDirectory() as folder:
            ref = f"docker://127.0.0.1:{server.port}/{sample['repository']}:{sample['tag']}"
            out = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", ref,
                                  f"dir:{folder}"], capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"skopeo copy {ref}: {out.stderr[-1000:]}")


@dataclass
class Target:
    """One registry on one data set, and its record for the current run."""

    label: str  # ours-sqlite, ours-postgres, distribution
    scale: int
    data: Path
    plan: dict
    repos: list[str]
    cluster: object = None
    url: str = ""
    server: Server | None = None
    record: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "distribution" if self.label == "distribution" else "ours"

    @property
    def key(self) -> str:
        return f"{self.label}@{self.scale}"


def start(target: Target, check: bool) -> None:
    """A fresh instance: start-up time, then memory once its workers have booted."""
    if target.label == "ours-postgres":
        target.cluster = dataset.postgres_cluster(target.data / "pg")
        target.url = target.cluster.url("registry")
    target.server = Server(target.kind, target.data, target.url)
    target.record = {"startup_s": target.server.start()}
    time.sleep(1.0)  # let every worker finish booting before memory is read
    rss, pss = tree_memory(target.server.proc.pid)
    target.record["rss_mib"], target.record["pss_mib"] = rss / 2**20, pss / 2**20
    if check:
        pull_check(target.server, target.plan)


def interleaved(targets: list[Target], requests: int, budget: float) -> None:
    """Each case, one request to each registry in turn, ``requests`` rounds: a burst of
    load from the rest of the machine hits every size and registry alike. A registry
    stops taking part in a case once it has spent ``budget`` seconds on it (and had
    20 requests): Distribution's catalog at 100x takes seconds a page."""
    for case in CASES:
        conns, paths, times, spent, cpu0 = {}, {}, {}, {}, {}
        for t in targets:
            conns[t.key] = http.client.HTTPConnection("127.0.0.1", t.server.port, timeout=600)
            paths[t.key] = urls(t.plan, t.repos)[case]
            for i in range(max(5, min(20, requests // 10))):  # warm-up
                _one(conns[t.key], *paths[t.key][i % len(paths[t.key])])
            times[t.key], spent[t.key] = [], 0.0
            cpu0[t.key] = tree_cpu_seconds(t.server.proc.pid)
        for i in range(requests):
            for t in targets:
                if len(times[t.key]) >= 20 and spent[t.key] > budget:
                    continue
                began = time.perf_counter()
                _one(conns[t.key], *paths[t.key][i % len(paths[t.key])])
                took = time.perf_counter() - began
                times[t.key].append(took * 1000)
                spent[t.key] += took
        for t in targets:
            cpu = tree_cpu_seconds(t.server.proc.pid) - cpu0[t.key]
            conns[t.key].close()
            ms = sorted(times[t.key])
            t.record[case] = {"median_ms": statistics.median(ms), "count": len(ms),
                              "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
                              "cpu_ms": cpu * 1000 / len(ms)}


def one_run(targets: list[Target], run: int, args: argparse.Namespace) -> list[dict]:
    """Start every registry of every size, time them interleaved, stop them, GC each."""
    order = targets if run % 2 == 0 else targets[::-1]
    try:
        for t in order:
            if args.gc_only:  # no server: the configuration Distribution's GC reads
                t.server, t.record = Server(t.kind, t.data), {}
                t.server.command()
                if t.label == "ours-postgres":
                    t.cluster = dataset.postgres_cluster(t.data / "pg")
                    t.url = t.cluster.url("registry")
                continue
            start(t, check=run == 0)
            print(f"run {run} {t.key}: up in {t.record['startup_s']:.2f} s", flush=True)
        if not args.gc_only:
            interleaved(order, args.requests, args.budget)
            for t in order:
                t.server.stop()
        for t in order:
            if t.key in args.no_gc or (t.key in args.gc_once and run > 0):
                continue
            config = getattr(t.server, "config", None)
            seconds, work, stopped = gc_seconds(t.kind, t.data, t.url, config, t.plan,
                                                args.gc_timeout)
            t.record["gc_s"] = seconds
            if work is not None:
                t.record["gc_work_s"] = work
            if stopped:
                t.record["gc_stopped_at_timeout"] = True
                if t.kind == "distribution":  # work is then the manifests it had examined
                    t.record["gc_manifests_examined"] = work
                    t.record.pop("gc_work_s", None)
            print(f"run {run} {t.key}: gc {seconds:.1f} s{' (stopped)' if stopped else ''}",
                  flush=True)
    finally:
        for t in order:
            if t.server and t.server.proc and t.server.proc.poll() is None:
                t.server.stop()
            if t.cluster is not None:
                t.cluster.stop_server()
                t.cluster = None
    return [{**t.record, "scale": t.scale, "target": t.label, "run": run} for t in order]


def load_plan(folder: Path, scale: int, dbs: list[str], distribution: bool) -> dict:
    """plan-<db>.json of each db (and of Distribution's copy), generating what is missing."""
    plans = {}
    for db in dbs:
        path = folder / f"plan-{db}.json"
        if not path.exists():
            dataset.generate(scale, db, folder, 16,
                             distribution and not (folder / "distribution").exists())
        plans[db] = json.loads(path.read_text())
    if distribution and not (folder / "distribution").exists():
        dataset.generate(scale, "none", folder, 16, True)
    if not plans:
        plans["none"] = json.loads((folder / "plan-none.json").read_text())
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--dbs", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds a registry may spend on one case in one run")
    parser.add_argument("--gc-timeout", type=float, default=7200.0,
                        help="stop a GC after this long (its time is then a lower bound)")
    parser.add_argument("--gc-once", type=lambda v: set(v.split(",")), default=set(),
                        help="LABEL@SCALE,...: GC measured in the first run only")
    parser.add_argument("--no-gc", type=lambda v: set(v.split(",")), default=set(),
                        help="LABEL@SCALE,...: GC not measured")
    parser.add_argument("--gc-only", action="store_true",
                        help="no server, no latency: the GCs alone (the long ones apart)")
    parser.add_argument("--targets", default="",
                        help="LABEL@SCALE,...: only these (default: every db and scale)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", action="store_true")
    parser.add_argument("--no-distribution", dest="distribution", action="store_false")
    parser.add_argument("--source", type=Path, default=ROOT,
                        help="the source tree of ours to run (e.g. `git archive REV` unpacked)")
    args = parser.parse_args()
    global SOURCE
    SOURCE = args.source.resolve()
    scales = [int(s) for s in args.scales.split(",")]
    dbs = args.dbs.split(",")
    if args.distribution and not shutil.which(DISTRIBUTION_BIN):
        raise SystemExit("apt-get install docker-registry (or --no-distribution)")
    samples: list[dict] = []
    targets = []
    for scale in scales:
        folder = args.data / f"x{scale}"
        wanted = [db for db in dbs if not args.targets or f"ours-{db}@{scale}" in args.targets]
        dist = args.distribution and (not args.targets or f"distribution@{scale}" in args.targets)
        plans = load_plan(folder, scale, wanted, dist)
        plan = next(iter(plans.values()))
        repos = dataset.repository_names(dataset.Plan.make(scale, plan["seed"]))
        labels = [f"ours-{db}" for db in dbs] + (["distribution"] if args.distribution else [])
        for label in labels:
            db = label.removeprefix("ours-")
            targets.append(Target(label, scale, folder / label,
                                  plans.get(db) or plan, repos))
    if args.targets:
        targets = [t for t in targets if t.key in args.targets.split(",")]
    for run in range(args.runs):
        for record in one_run(targets, run, args):
            samples.append(record)
            print(json.dumps(_brief(record)), flush=True)
        if args.json:
            args.json.write_text(json.dumps(samples, indent=1))
    print(table(samples))
    if args.plot:
        from bench.scale_plot import plot

        plot(samples, ROOT / "docs" / "performance")


def _brief(record: dict) -> dict:
    return {k: (round(v["median_ms"], 2) if isinstance(v, dict) else
                round(v, 2) if isinstance(v, float) else v) for k, v in record.items()}


if __name__ == "__main__":
    main()
