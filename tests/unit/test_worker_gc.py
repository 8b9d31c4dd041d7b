"""A worker's start-up objects are out of the garbage collector's way (server.py
``_freeze_start_up``): what it built to serve is frozen, so full collections walk
only what requests leave behind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROCESS = textwrap.dedent("""
    import gc, json, sys
    from ociregistry.config import load_settings
    from ociregistry import server
    settings = load_settings(None, {"data_dir": sys.argv[1]})
    from ociregistry.runtime import build_runtime
    build_runtime(settings, migrate=True).metadata.dispose()  # as cmd_serve prepares it
    app = server._app_factory(settings)  # what a worker builds after the fork
    tracked = {id(o) for o in gc.get_objects()}  # the frozen are not listed
    runtime = app.extensions["ociregistry"]
    client = app.test_client()
    assert client.get("/v2/").status_code == 200
    print(json.dumps({"frozen": gc.get_freeze_count(),
                      "app": id(app) in tracked, "runtime": id(runtime) in tracked,
                      "engine": id(runtime.metadata.engine) in tracked}))
""")


def test_a_workers_app_is_frozen_after_start_up(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROCESS, str(tmp_path / "data")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["frozen"] > 10_000
    assert not found["app"] and not found["runtime"] and not found["engine"]
