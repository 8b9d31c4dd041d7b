"""The per-request floor, layer by layer: server CPU µs per request.

    .venv/bin/python bench/floors.py [--rounds 3] [--seconds 5] [--workers 4] [--threads 8]
    .venv/bin/python bench/floors.py --inproc [--profile]   # no server: the app alone

For each layer (bench/floor_apps.py: a bare WSGI callable, Flask with no hooks,
this registry's whole app) under each server (gunicorn gthread with the worker
class `serve` runs, gunicorn's stock gthread worker, granian WSGI) it loads
``GET /v2/`` (wrk) and a manifest HEAD by tag (ab, keep-alive), 32 connections,
and divides the CPU the server's whole process tree spent (utime + stime from
/proc, bench/proctree.py) by the requests answered. CPU per request holds
still on a busy machine where requests/s does not; rounds alternate the order
of the servers. Prints the medians (min–max) as Markdown.

``--blob-mib N`` instead pushes one N MiB blob to the whole app under each
server (monolithic, by sendfile from the page cache) and pulls it three times:
MiB/s, server CPU ms per MiB, and the tree's peak RSS above idle during the push
(a body must stream, not be buffered).

``--inproc`` calls each app's WSGI callable directly, in this process, with a
prepared environ (no socket, no server): process CPU µs per call, the app's own
floor. ``--profile`` adds a cProfile of the whole app's calls (top functions).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.client import Client  # noqa: E402
from bench.loadgen import ab_head, wrk  # noqa: E402
from bench.proctree import tree_cpu_seconds  # noqa: E402
from bench.servers import free_port  # noqa: E402

REPO, TAG = "floors/app", "v1"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
GRANIAN = str(Path(sys.executable).parent / "granian")


def push_image(url: str) -> None:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": digest}, "layers": []}).encode()
    c = Client(url)
    try:
        c.push_bytes(REPO, config, digest)
        c.put_manifest(REPO, TAG, manifest, MANIFEST_TYPE)
    finally:
        c.close()


def command(server: str, layer: str, port: int, data_dir: Path, workers: int,
            threads: int) -> list[str]:
    if server == "gunicorn" and layer == "full":
        return [sys.executable, "-m", "ociregistry", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--data-dir", str(data_dir), "--workers", str(workers),
                "--threads", str(threads)]
    if server.startswith("gunicorn"):
        # "gunicorn": the worker class `serve` runs; "gunicorn-stock": gunicorn's own gthread
        worker = "gthread" if server == "gunicorn-stock" else \
            "ociregistry.server_worker.RegistryThreadWorker"
        return [sys.executable, "-m", "gunicorn", "-k", worker, "-w", str(workers),
                "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--keep-alive", "75",
                "--log-level", "warning", f"bench.floor_apps:{layer}"]
    cmd = [GRANIAN, "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--blocking-threads", str(threads), "--no-ws",
           "--log-level", "warning"]
    if layer == "full":
        cmd.append("--factory")
    return [*cmd, f"bench.floor_apps:{layer}"]


@contextlib.contextmanager
def running(cmd: list[str], data_dir: Path, log: Path) -> Iterator[tuple[int, str]]:
    port = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else int(
        cmd[cmd.index("-b") + 1].rsplit(":", 1)[1])
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["FLOORS_DATA_DIR"] = str(data_dir)
    metrics_dir = Path(tempfile.mkdtemp(prefix="floors-metrics-"))
    if "granian" in cmd[0]:  # what `serve` gives gunicorn's workers
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url + "/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not answer within 60 s")
            time.sleep(0.1)
        time.sleep(1.0)  # every worker booted
        yield proc.pid, url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def measure(pid: int, url: str, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    wrk(url + "/v2/", 1)  # warm: every worker has answered, imports and caches done
    ab_head(f"{url}/v2/{REPO}/manifests/{TAG}", 1)
    for name, load in (("base", lambda: wrk(url + "/v2/", seconds)),
                       ("head", lambda: ab_head(f"{url}/v2/{REPO}/manifests/{TAG}", seconds))):
        cpu0 = tree_cpu_seconds(pid)
        result = load()
        cpu = tree_cpu_seconds(pid) - cpu0
        if result.errors:
            raise RuntimeError(f"{name}: {result.errors} errors at {url}")
        out[f"{name}_us"] = cpu / result.requests * 1e6
        out[f"{name}_rps"] = result.rps
    return out


def blob_rounds(args: argparse.Namespace) -> None:
    from bench.data import make_blob
    from bench.proctree import TreeMonitor, tree_memory

    tmp = Path(tempfile.mkdtemp(prefix="floors-blob-"))
    try:
        blob = make_blob(tmp / "blob", args.blob_mib << 20, seed=7)
        rows: dict[str, list[dict[str, float]]] = {s: [] for s in args.servers}
        for r in range(args.rounds):
            for server in args.servers if r % 2 == 0 else list(reversed(args.servers)):
                data_dir = tmp / f"{server}-{r}"
                cmd = command(server, "full", free_port(), data_dir, args.workers, args.threads)
                if server != "gunicorn":
                    data_dir.mkdir(parents=True)  # `serve` would create and migrate it
                    subprocess.run([sys.executable, "-m", "ociregistry", "db", "upgrade",
                                    "--data-dir", str(data_dir)], check=True, cwd=ROOT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
                with running(cmd, data_dir, tmp / f"{server}.log") as (pid, url):
                    monitor = TreeMonitor(pid, interval=0.02).start()
                    idle = tree_memory(pid)[0]
                    c = Client(url)
                    with open(blob.path, "rb") as f:
                        c.push_monolithic(REPO, f, blob.size, blob.digest)
                    push_peak = monitor.peak_rss - idle
                    cpu0, t0 = tree_cpu_seconds(pid), time.perf_counter()
                    for _ in range(3):
                        c.pull_blob(REPO, blob.digest, blob.size)
                    wall, cpu = time.perf_counter() - t0, tree_cpu_seconds(pid) - cpu0
                    c.close()
                    monitor.stop()
                mib = 3 * args.blob_mib
                m = {"pull_mibs": mib / wall, "pull_cpu_ms_per_mib": cpu / mib * 1e3,
                     "push_rss_mib": push_peak / (1 << 20)}
                rows[server].append(m)
                print(f"[{time.strftime('%H:%M:%S')}] round {r + 1} {server}: "
                      + ", ".join(f"{k} {v:,.2f}" for k, v in m.items()), flush=True)
        print(f"\n| server | {args.blob_mib} MiB blob GET, MiB/s | CPU ms per MiB pulled "
              "| tree RSS above idle during the push, MiB |\n|---|--:|--:|--:|")
        for server, runs in rows.items():
            cells = []
            for key in ("pull_mibs", "pull_cpu_ms_per_mib", "push_rss_mib"):
                values = [m[key] for m in runs]
                cells.append(f"{statistics.median(values):,.2f} "
                             f"({min(values):,.2f}–{max(values):,.2f})")
            print(f"| {server} | " + " | ".join(cells) + " |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def serve_rounds(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="floors-"))
    data_dir = tmp / "data"
    try:
        port = free_port()
        with running(command("gunicorn", "full", port, data_dir, 1, 2), data_dir,
                     tmp / "setup.log") as (_pid, url):
            push_image(url)
        configs = [(s, layer) for layer in args.layers for s in args.servers
                   if not (s == "gunicorn-stock" and layer == "full")]
        results: dict[tuple[str, str], list[dict[str, float]]] = {c: [] for c in configs}
        for r in range(args.rounds):
            order = configs if r % 2 == 0 else list(reversed(configs))
            for server, layer in order:
                cmd = command(server, layer, free_port(), data_dir, args.workers, args.threads)
                with running(cmd, data_dir, tmp / f"{server}-{layer}.log") as (pid, url):
                    m = measure(pid, url, args.seconds)
                results[(server, layer)].append(m)
                print(f"[{time.strftime('%H:%M:%S')}] round {r + 1} {server} {layer}: "
                      + ", ".join(f"{k} {v:,.0f}" for k, v in m.items()), flush=True)
        load = os.getloadavg()
        print(f"\n{args.rounds} rounds, {args.seconds:g} s loads, {args.workers} workers x "
              f"{args.threads} threads, 32 connections; load average at the end "
              f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
        print("| server | layer | GET /v2/ CPU µs/req | GET /v2/ req/s "
              "| manifest HEAD CPU µs/req | manifest HEAD req/s |")
        print("|---|---|--:|--:|--:|--:|")
        for (server, layer), runs in results.items():
            cells = []
            for key in ("base_us", "base_rps", "head_us", "head_rps"):
                values = [m[key] for m in runs]
                cells.append(f"{statistics.median(values):,.0f} "
                             f"({min(values):,.0f}–{max(values):,.0f})")
            print(f"| {server} | {layer} | " + " | ".join(cells) + " |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- in process ---------------------------------------------------------------------
def environ_for(method: str, path: str) -> dict[str, object]:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "5000", "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_HOST": "127.0.0.1:5000",
            "HTTP_ACCEPT": MANIFEST_TYPE, "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.version": (1, 0)}


def call(app: object, method: str, path: str) -> str:
    status: list[str] = []

    def start_response(s: str, _headers: object, _exc: object = None) -> None:
        status.append(s)

    body = app(environ_for(method, path), start_response)  # type: ignore[operator]
    for _ in body:
        pass
    close = getattr(body, "close", None)
    if close:
        close()
    return status[0]


def inproc(args: argparse.Namespace) -> None:
    import logging

    from bench import floor_apps

    tmp = Path(tempfile.mkdtemp(prefix="floors-inproc-"))
    os.environ["FLOORS_DATA_DIR"] = str(tmp / "data")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp)
    with running(command("gunicorn", "full", free_port(), tmp / "data", 1, 2), tmp / "data",
                 tmp / "setup.log") as (_pid, url):
        push_image(url)
    # The access log goes where `serve` sends it (stderr), here to a file.
    from ociregistry.logs import setup_logging

    setup_logging()
    handler = logging.getLogger().handlers[0]
    handler.stream = open(tmp / "access.log", "w")  # type: ignore[attr-defined]
    apps = {"raw": floor_apps.raw, "flask_bare": floor_apps.flask_bare,
            "full": floor_apps.full()}
    requests = {"GET /v2/": ("GET", "/v2/"),
                "manifest HEAD": ("HEAD", f"/v2/{REPO}/manifests/{TAG}")}
    print("| layer | request | CPU µs per call (in process) |\n|---|---|--:|")
    for layer, app in apps.items():
        for label, (method, path) in requests.items():
            assert call(app, method, path).startswith("200"), (layer, label)
            samples = []
            for _ in range(args.rounds):
                t0 = time.process_time()
                for _ in range(args.calls):
                    call(app, method, path)
                samples.append((time.process_time() - t0) / args.calls * 1e6)
            print(f"| {layer} | {label} | {statistics.median(samples):,.1f} "
                  f"({min(samples):,.1f}–{max(samples):,.1f}) |", flush=True)
    if args.profile:
        for label, (method, path) in requests.items():
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.calls):
                call(apps["full"], method, path)
            profile.disable()
            print(f"\n### full app, {label}: top functions by own time ({args.calls} calls)\n")
            stream = io.StringIO()
            pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(25)
            print(stream.getvalue())
    shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5, help="seconds per load")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--servers", nargs="+", default=["gunicorn", "granian"],
                   choices=["gunicorn", "gunicorn-stock", "granian"],
                   help="gunicorn: as `serve` runs it (our worker class); gunicorn-stock: "
                        "gunicorn's own gthread worker (not for the full app)")
    p.add_argument("--layers", nargs="+", default=["raw", "flask_bare", "full"],
                   choices=["raw", "flask_bare", "full"])
    p.add_argument("--blob-mib", type=int, default=0,
                   help="push and pull one blob this big instead of the request loads")
    p.add_argument("--inproc", action="store_true", help="call the apps in this process")
    p.add_argument("--calls", type=int, default=3000, help="--inproc: calls per round")
    p.add_argument("--profile", action="store_true", help="--inproc: cProfile the full app")
    args = p.parse_args(argv)
    if args.inproc:
        inproc(args)
    elif args.blob_mib:
        blob_rounds(args)
    else:
        serve_rounds(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
