"""Start and stop the two registries under test, each on a free port with fresh storage.

ours:          `python app.py --host 127.0.0.1 --port P --data-dir D`, i.e. exactly
               the defaults `python app.py` uses (gunicorn, its worker class,
               worker and thread counts).
distribution:  CNCF Distribution (`/usr/bin/docker-registry serve config.yml`) with
               the Debian package's stock config.yml, changed only where it must
               be: storage in a temporary directory, a loopback port, no auth.
               So it keeps its default logging (info, access log on) as ours keeps
               its access log, delete enabled and the in-memory blob descriptor
               cache; the storage health check is left out.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.proctree import TreeMonitor

ROOT = Path(__file__).resolve().parent.parent
OURS, DISTRIBUTION = "ours", "distribution"
DISTRIBUTION_BIN = "/usr/bin/docker-registry"
TOOLS = {DISTRIBUTION_BIN: "docker-registry", "wrk": "wrk", "ab": "apache2-utils"}

DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""


def missing_tools() -> list[str]:
    """Debian packages to install for the tools not found."""
    return sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool_version(cmd: list[str], pattern: str = r"(.+)") -> str:
    """The first match of `pattern` in what `cmd` prints, or "?"."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1).strip() if m else "?"


class Registry:
    """One registry process with its own storage under `workdir`; a context manager.
    The caller removes `workdir` (deleting a registry's many small files is slow, so
    the harness does it once at the end rather than between measurements)."""

    def __init__(self, kind: str, workdir: Path, source: Path = ROOT,
                 label: str | None = None) -> None:
        self.kind = kind
        self.label = label or kind  # how reports name it (two builds of ours differ)
        self.source = source  # the source tree of ours to run (another revision: bench/hotpaths.py)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.monitor: TreeMonitor | None = None

    def _command(self) -> tuple[list[str], dict[str, str]]:
        storage = self.workdir / "storage"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}
        # BENCH_OURS_OCIREGISTRY_X=v sets OCIREGISTRY_X=v for ours only (a setting to
        # compare, e.g. BENCH_OURS_OCIREGISTRY_STORAGE__FSYNC=false); the harness's own
        # environment never leaks into either registry otherwise.
        if self.kind == OURS:
            env.update({k.removeprefix("BENCH_OURS_"): v for k, v in os.environ.items()
                        if k.startswith("BENCH_OURS_OCIREGISTRY_")})
            if self.source == ROOT:  # this tree only, not an earlier revision (push_ab.py)
                env.update({k.removeprefix("BENCH_TREE_"): v for k, v in os.environ.items()
                            if k.startswith("BENCH_TREE_")})
        if self.kind == OURS:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(self.source / "src"), *filter(None, [env.get("PYTHONPATH")])])
            return [sys.executable, str(self.source / "app.py"), "--host", "127.0.0.1",
                    "--port", str(self.port), "--data-dir", str(storage)], env
        storage.mkdir(parents=True)
        config = self.workdir / "config.yml"
        config.write_text(DISTRIBUTION_CONFIG.format(root=storage, port=self.port))
        return [DISTRIBUTION_BIN, "serve", str(config)], env

    def __enter__(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd, env = self._command()
        self.log_path = self.workdir / "server.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"{self.kind} did not answer /v2/ within 60 s")
            time.sleep(0.1)
        time.sleep(0.5)  # let every gunicorn worker finish booting
        self.monitor = TreeMonitor(self.proc.pid).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.monitor:
            self.monitor.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
