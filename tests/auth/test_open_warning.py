"""`ociregistry serve` says once, at start, when it listens beyond this host with no auth.

Real servers on 0.0.0.0 and on 127.0.0.1, with and without an htpasswd file;
their stderr is read after a clean stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.auth.support import write_htpasswd
from tests.server import free_port

MARKER = "without authentication"


def _serve(tmp_path: Path, host: str, config: dict | None = None) -> str:
    """Start, wait until it answers, stop; its whole stderr."""
    port = free_port()
    cmd = [sys.executable, "-m", "ociregistry", "serve", "--host", host, "--port", str(port),
           "--data-dir", str(tmp_path / "data"), "--workers", "2"]
    if config is not None:
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--config", str(path)]
    err = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIREGISTRY_")}
    with open(err, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, err.read_text()
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, "did not start: " + err.read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return err.read_text(errors="replace")


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if MARKER in line]


def test_all_addresses_without_auth_warn_once(tmp_path):
    stderr = _serve(tmp_path, "0.0.0.0")
    warnings = _warnings(stderr)
    assert len(warnings) == 1, stderr
    (line,) = warnings
    assert "WARNING" in line and "0.0.0.0" in line and "auth" in line, line


def test_loopback_without_auth_is_quiet(tmp_path):
    stderr = _serve(tmp_path, "127.0.0.1")
    assert _warnings(stderr) == [], stderr
    assert "Listening at" in stderr or "Booting worker" in stderr, stderr  # it did start


def test_all_addresses_with_auth_are_quiet(tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd")
    stderr = _serve(tmp_path, "0.0.0.0", {"auth": {"htpasswd": str(htpasswd)}})
    assert _warnings(stderr) == [], stderr
    assert "Booting worker" in stderr, stderr


@pytest.mark.parametrize(("host", "open_"), [
    ("0.0.0.0", True), ("::", True), ("", True), ("192.0.2.1", True),
    ("registry.example.com", True), ("127.0.0.1", False), ("127.1.2.3", False),
    ("::1", False), ("[::1]", False), ("localhost", False),
])
def test_which_addresses_are_beyond_this_host(host, open_):
    from ociregistry.server import beyond_this_host

    assert beyond_this_host(host) is open_
