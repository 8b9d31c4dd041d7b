"""What a default server's processes hold (docs/performance.md, "Workers, threads and memory").

A default registry (filesystem + SQLite, no token auth, no webhooks, no mirror)
must not load what only other configurations use: PyJWT with cryptography's
native library, requests, alembic (the schema migration runs in a child of the
master before the workers fork), boto3. Checked on a real server through
/proc/<pid>/maps (a native library mapped into a process) and, for the pure
Python modules, in a subprocess that does what the master and a worker do. With
two workers the master does not import the app at all (what it holds at the fork
counts again in every worker's RSS); with more it shares the app's code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from tests.helpers import make_image, put_manifest
from tests.server import RegistryProcess, children_of, serving_workers

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")

CRYPTOGRAPHY_NATIVE = "cryptography/hazmat/bindings/_rust"


def _exercise(url: str, repo: str) -> None:
    """A push, a pull, the UI and the management API: what a default server serves."""
    manifest = make_image(url, repo)
    put_manifest(url, repo, "v1", manifest)
    assert requests.get(f"{url}/v2/{repo}/manifests/v1").status_code == 200
    for path in ("/ui/", "/api/v1/repositories", "/metrics"):
        assert requests.get(url + path, timeout=30).status_code == 200, path


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_default_server_maps_no_token_crypto_and_answers_both_workers_after_a_restart(
        tmp_path):
    data = tmp_path / "data"
    for round_ in range(2):  # the second start: an existing database, the child migrates nothing
        server = RegistryProcess(data, workers=2).start()
        try:
            for i in range(6):  # new connections each time: both workers take some
                _exercise(server.url, f"mem/r{round_}-{i}")
            assert server.proc is not None
            pids = [server.proc.pid, *children_of(server.proc.pid)]
            # the master and two workers (the start-up child is gone); with no endpoint
            # the events delivery process leaves after its first look, or is about to
            assert len(serving_workers(server.proc.pid)) == 2 and len(pids) in (3, 4)
            for pid in pids:
                assert CRYPTOGRAPHY_NATIVE not in _maps(pid), pid
        finally:
            assert server.stop() == 0
    server = RegistryProcess(data, workers=2).start()
    try:
        listed = requests.get(f"{server.url}/v2/_catalog?n=100").json()["repositories"]
        assert len(listed) == 12
    finally:
        server.stop()


PROCESS = textwrap.dedent("""
    import json, sys
    from ociregistry.config import load_settings
    from ociregistry import cli, server
    settings = load_settings(None, {"data_dir": sys.argv[1]})
    from ociregistry.server_memory import run_in_child
    code, key = run_in_child(lambda: cli._prepare_data(settings))  # as cmd_serve does
    settings.ui.secret_key = key
    assert not server._share_before_fork(2)  # the default on 2 CPUs: a light master
    master = sorted(m for m in sys.modules if m.split(".")[0] in WATCH)
    light = not any(m == "flask" or m.startswith("ociregistry.web") for m in sys.modules)
    app = server._app_factory(settings)  # what a worker builds after the fork
    client = app.test_client()
    for path in ("/v2/", "/ui/", "/api/v1/repositories", "/v2/_catalog"):
        assert client.get(path).status_code == 200, path
    worker = sorted(m for m in sys.modules if m.split(".")[0] in WATCH)
    print(json.dumps({"code": code, "key": bool(key), "master": master, "worker": worker,
                      "light": light}))
""")
WATCH = ["jwt", "cryptography", "requests", "alembic", "mako", "boto3", "botocore",
         "psycopg", "psycopg2", "matplotlib", "schemathesis"]


def test_master_and_worker_of_a_default_server_import_none_of_the_optional_stacks(tmp_path):
    code = f"WATCH = {WATCH!r}\n" + PROCESS
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["code"] == 0 and found["key"]
    assert found["master"] == []
    assert found["light"]  # the master forks the workers without the app (docs/performance.md)
    assert found["worker"] == []


def test_with_more_workers_the_master_imports_the_apps_code_before_forking():
    code = ("import sys\nfrom ociregistry import server\n"
            "assert server._share_before_fork(4)\n"
            "print('flask' in sys.modules, 'ociregistry.web.registry_api' in sys.modules, "
            "'jwt' in sys.modules, 'requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "True", "False", "False"]
