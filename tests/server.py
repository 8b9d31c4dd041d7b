"""Start a real registry (gunicorn, via the CLI) on a free port for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the fields after the command name, which is in parentheses
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


DELIVERY_COMM = "ocireg-events"  # the events delivery process (events/process.py)


def serving_workers(pid: int) -> list[int]:
    """The gunicorn master's serving workers: its children but the events delivery
    process, which runs beside them (one per instance)."""
    found = []
    for child in children_of(pid):
        try:
            comm = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        if comm != DELIVERY_COMM:
            found.append(child)
    return found


class RegistryProcess:
    """A registry server process with its own data directory."""

    ready_path = "/v2/"  # 200 once the server is up, or 401 with authentication on

    def __init__(
        self,
        data_dir: Path,
        workers: int = 2,
        env: dict[str, str] | None = None,
        config: Path | None = None,
        port: int | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.port = port or free_port()
        self.env = env or {}
        self.config = config
        self.wrapper = wrapper or []  # a command the server runs under (e.g. strace)
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"registry-{self.port}.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryProcess:
        cmd = [
            sys.executable, "-m", "ociregistry", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), "--workers", str(self.workers),
        ]
        if self.config:
            cmd += ["--config", str(self.config)]
        cmd = [*self.wrapper, *cmd]
        server_url = os.environ.get("REGISTRY_TEST_DATABASE_URL")
        if server_url and "OCIREGISTRY_DATABASE__URL" not in self.env:
            # Opt-in: every registry gets a fresh PostgreSQL database on that server
            # (kept across restarts of this process object).
            from tests.cluster.pg import create_database

            self.env = {**self.env, "OCIREGISTRY_DATABASE__URL": create_database(server_url)}
        env = {**os.environ, **self.env}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(self.data_dir.parent))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {self.log_path.read_text()[-3000:]}")
            try:
                # 401: up, with authentication configured
                if requests.get(self.url + self.ready_path, timeout=1).status_code in (200, 401):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("registry did not start in time")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code
