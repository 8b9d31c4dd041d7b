"""The README's "Run the registry" line, as written, in a fresh copy of the repository:
it installs and serves, and says nothing but the server's own start-up lines (no pip
progress, no deprecation warning, no pip-version notice, no migration chatter)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import requests

from tests.deploy.walkthrough import ROOT, free_ports

# This machine's pip configuration names local package directories that lack some
# packages; pip warns about each (a fresh Debian has no such configuration).
MACHINE_PIP_CONFIG = re.compile(r"^WARNING: Location 'file://\S+' is ignored: it is neither a file "
                                r"nor a directory\.$")
NOISE = re.compile(r"Collecting|Installing|Successfully|Requirement already|notice|DEPRECAT|"
                   r"Deprecat|alembic|Running upgrade|WARNING", re.I)


def _run_the_registry_line() -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index("**Run the registry**"):]
    return re.search(r"```sh\n(.*?)\n```", after, re.S).group(1).strip()


def test_run_the_registry_line_installs_and_serves_quietly(tmp_path):
    line = _run_the_registry_line()
    assert line.startswith("python3 -m venv .venv") and "app.py" in line, line
    copy = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCIREGISTRY_", "VIRTUAL_ENV"))}
    env.update(OCIREGISTRY_HTTP__HOST="127.0.0.1", OCIREGISTRY_HTTP__PORT=str(port),
               OCIREGISTRY_HTTP__WORKERS="1")
    log = tmp_path / "output.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", line], cwd=copy,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    output = log.read_text(errors="replace")
    noisy = [line for line in output.splitlines()
             if NOISE.search(line) and not MACHINE_PIP_CONFIG.match(line)]
    assert not noisy, output
    assert (copy / "data" / "registry.db").exists()  # ./data, created on first start
