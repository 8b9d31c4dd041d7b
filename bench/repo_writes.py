"""Creating repositories through gunicorn: wall time and server CPU per request.

    .venv/bin/python bench/repo_writes.py --baseline 24051e4 [--rounds 3] [--repos 1000]

The issue's row "creating 1,000 repositories (mount + manifest PUT, 8 clients)"
(bench/loads.py ``repos``): per repository a cross-repository mount of the config
blob from bench/app, then a manifest PUT (a Docker v2 manifest with a config and
no layers), 8 client threads. Each round starts a fresh server per build (the
baseline exported with ``git archive``, then this work tree: interleaved, so load
swings hit both alike) and reports the wall time of the loop and the server process
tree's user and system CPU per request (2 requests per repository). On a shared
2-core machine the client's threads and the server compete for the cores: wall time
follows the server's CPU per request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.client import Client  # noqa: E402
from bench.data import DOCKER_MANIFEST, Dataset  # noqa: E402
from bench.loads import parallel, push_image  # noqa: E402
from bench.proctree import _stat_fields, tree_pids  # noqa: E402
from bench.servers import OURS, Registry  # noqa: E402

CLIENTS = 8


def cpu_split(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the live process tree (children reaped included)."""
    user = system = 0
    for pid in tree_pids(root):
        try:
            fields = _stat_fields(pid)
        except (OSError, IndexError):
            continue
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    hz = os.sysconf("SC_CLK_TCK")
    return user / hz, system / hz


def one_round(source: Path, work: Path, data: Dataset, repos: int, label: str
              ) -> tuple[float, float, float]:
    tiny = data.tiny
    with Registry(OURS, work, source=source, label=label) as reg:
        client = Client(reg.url)
        push_image(client, "bench/app", tiny, "latest")
        client.close()
        per = repos // CLIENTS

        def create(i: int) -> None:
            c = Client(reg.url)
            for k in range(i * per, (i + 1) * per):
                name = f"catalog/r{k:05d}"
                c.mount(name, tiny.config_digest, "bench/app", tiny.config)
                c.put_manifest(name, "latest", tiny.manifest, DOCKER_MANIFEST)
            c.close()

        user0, sys0 = cpu_split(reg.proc.pid)
        wall = parallel(CLIENTS, create)
        user1, sys1 = cpu_split(reg.proc.pid)
    requests = 2 * per * CLIENTS
    return wall, (user1 - user0) / requests * 1e3, (sys1 - sys0) / requests * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", help="git revision to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repos", type=int, default=1000)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="repo-writes-"))
    try:
        builds = {"current": ROOT}
        if args.baseline:
            base = tmp / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline,
                                      "src", "app.py"], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            builds = {"baseline": base, **builds}
        data = Dataset.create(tmp / "data", 4, 8)
        print("| round | build | wall s | user ms/request | system ms/request | CPU ms/request |")
        print("| --: | --- | --: | --: | --: | --: |")
        for r in range(args.rounds):
            for label, source in builds.items():
                wall, user, system = one_round(source, tmp / f"{label}{r}", data, args.repos,
                                               label)
                print(f"| {r} | {label} | {wall:.2f} | {user:.3f} | {system:.3f} | "
                      f"{user + system:.3f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
