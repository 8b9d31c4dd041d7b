"""Debian's own PostgreSQL and nginx, as a walkthrough finds them, without touching the
machine's: a PostgreSQL cluster of the test's own made with Debian's tools, and Debian's
nginx configuration copied and run on its own pid file, logs and ports.

The walkthroughs talk to them as they would to the machine's services: ``runuser -u
postgres -- psql -p PORT`` (peer authentication over Debian's socket directory, a
password over TCP, as Debian's pg_hba.conf says), ``nginx -c NGINX_CONF -s reload``.
"""

from __future__ import annotations

import glob
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.support import debian_nginx_copy
from tests.deploy.walkthrough import free_ports, port_free

TIMEOUT = 180


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd="/",
                            stdin=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items() if not k.startswith("PG")})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                           f"{result.stdout}\n{result.stderr}")
    return result


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper holds no socket and no file)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


class DebianPostgres:
    """``pg_createcluster VERSION NAME -p PORT --start``: Debian's defaults (pg_hba.conf,
    socket in /var/run/postgresql), a port of its own; ``pg_dropcluster`` at the end."""

    def __init__(self) -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
        if not versions or not Path("/usr/bin/pg_createcluster").exists():
            pytest.fail("Debian's PostgreSQL is not installed: apt-get install postgresql")
        self.version = Path(versions[0]).parts[-3]
        self.name = f"walkthrough_{secrets.token_hex(4)}"
        (self.port,) = free_ports(1)
        while self.port == 5432:
            (self.port,) = free_ports(1)

    def start(self) -> DebianPostgres:
        # A throwaway cluster: durability buys nothing here.
        _run("pg_createcluster", self.version, self.name, "-p", str(self.port),
             "-o", "fsync=off", "-o", "synchronous_commit=off", "--start")
        return self

    def stop(self) -> None:
        _run("pg_dropcluster", "--stop", self.version, self.name)


class DebianNginx:
    """Debian's nginx.conf, default site included, copied under ``base`` and started."""

    def __init__(self, base: Path) -> None:
        self.base = base
        (self.default_site_port,) = free_ports(1)
        self.conf = debian_nginx_copy(base, default_site_port=self.default_site_port)
        self.pid_file = base / "nginx.pid"
        self.error_log = base / "log" / "error.log"

    def _nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run("nginx", "-c", str(self.conf), "-e", str(self.error_log), *args)

    def start(self) -> DebianNginx:
        self._nginx()  # daemonises, as Debian's service does
        deadline = time.monotonic() + TIMEOUT
        while port_free(self.default_site_port):
            assert time.monotonic() < deadline, self.error_log.read_text(errors="replace")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
