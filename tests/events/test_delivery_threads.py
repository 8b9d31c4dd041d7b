"""Where gunicorn does not run (waitress, on Windows) delivery stays in threads of
the serving process: no delivery process, and events still arrive."""

from __future__ import annotations

import subprocess
import sys
import time

import requests

from tests.events.conftest import write_config
from tests.events.test_delivery import push
from tests.server import children_of, free_port

SERVE = """
import sys
from ociregistry.cli import _prepare_data
from ociregistry.config import load_settings
from ociregistry.server import _serve_waitress

config, data, port = sys.argv[1:]
settings = load_settings(config, {"data_dir": data,
                                  "http": {"host": "127.0.0.1", "port": int(port)}})
code, settings.ui.secret_key = _prepare_data(settings)
_serve_waitress(settings, 1)
"""


def test_waitress_delivers_from_threads_of_its_own_process(tmp_path, receiver):
    config = write_config(tmp_path / "config.yml", [
        {"name": "ci", "url": receiver.url, "actions": ["manifest.pushed"]}])
    port = free_port()
    log = open(tmp_path / "waitress.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(config),
                             str(tmp_path / "data"), str(port)], stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "waitress.log").read_text()
            try:
                if requests.get(url + "/v2/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "waitress did not start"
            time.sleep(0.1)
        digest = push(url, "threads/app", "v1")
        bodies = receiver.wait_for(lambda b: len(b) >= 1)
        assert [b["digest"] for b in bodies] == [digest]
        assert children_of(proc.pid) == []  # no delivery process: threads in this one
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
