"""The process bench/instructions.py runs under callgrind (and the data it fills).

    instructions_worker.py fill TREE DATA           # one repository, 1,001 tags, a blob
    instructions_worker.py run TREE DATA N CASE     # N requests of kind CASE, counted
    instructions_worker.py cpu TREE DATA N CASE R   # no valgrind: CPU µs per request, R rounds

TREE's src/ goes first on sys.path, so the build measured is that tree's.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import sys
from typing import Any

MT = "application/vnd.oci.image.manifest.v1+json"


def _app(tree: str, data: str) -> Any:
    sys.path.insert(0, os.path.join(tree, "src"))
    os.environ["OCIREGISTRY_DATA_DIR"] = data
    import ociregistry
    from ociregistry.config import load_settings
    from ociregistry.runtime import build_runtime
    from ociregistry.web.app import create_app

    assert ociregistry.__file__.startswith(tree), ociregistry.__file__
    return create_app(runtime=build_runtime(load_settings(), migrate=True))


def fill(tree: str, data: str) -> None:
    client = _app(tree, data).test_client()
    config = os.urandom(1024)
    blob = "sha256:" + hashlib.sha256(config).hexdigest()
    assert client.post(f"/v2/t/app/blobs/uploads/?digest={blob}", data=config).status_code == 201
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob,
        "size": len(config)}}).encode()
    headers = {"Content-Type": MT}
    r = client.put("/v2/t/app/manifests/latest", data=manifest, headers=headers)
    assert r.status_code == 201
    for i in range(1000):
        assert client.put(f"/v2/t/app/manifests/v{i:04d}", data=manifest,
                          headers=headers).status_code == 201
    with open(os.path.join(data, "ids.json"), "w") as f:
        json.dump({"manifest": r.headers["Docker-Content-Digest"], "blob": blob}, f)


def run(tree: str, data: str, n: int, case: int, cpu_rounds: int = 0) -> None:
    from werkzeug.test import EnvironBuilder

    logging.basicConfig(level=logging.INFO, filename=os.path.join(data, "registry.log"))
    app = _app(tree, data)
    with open(os.path.join(data, "ids.json")) as f:
        ids = json.load(f)
    method, path = [
        ("HEAD", "/v2/t/app/manifests/latest"), ("GET", "/v2/t/app/manifests/latest"),
        ("GET", f"/v2/t/app/manifests/{ids['manifest']}"),
        ("HEAD", f"/v2/t/app/blobs/{ids['blob']}"),
        ("GET", f"/v2/t/app/blobs/{ids['blob']}"), ("GET", "/v2/"), ("GET", "/v2/t/app/tags/list"),
        ("HEAD", "/v2/t/app/blobs/sha256:" + "1" * 64),  # a push's first look at a layer
    ][case]
    expected = "404" if case == 7 else "200"
    environ = EnvironBuilder(method=method, path=path, headers={"Host": "localhost"},
                             environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()

    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        assert status.startswith(expected), status

    def one() -> None:
        body = app(dict(environ), start_response)
        for _ in body:
            pass
        if hasattr(body, "close"):
            body.close()

    for _ in range(20):
        one()
    if cpu_rounds:  # no valgrind: CPU µs per request, best and median of the rounds
        import statistics
        import time

        rounds = []
        for _ in range(cpu_rounds):
            t0 = time.process_time()
            for _ in range(n):
                one()
            rounds.append((time.process_time() - t0) / n * 1e6)
        print(f"cpu_us best {min(rounds):.0f} median {statistics.median(rounds):.0f}")
        return

    def loop(_a: Any, _b: Any) -> int:
        for _ in range(n):
            one()
        return 0

    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(loop)
    pair = (ctypes.c_int * 2)(2, 1)
    # qsort of two elements compares once: the loop, the only code callgrind counts.
    ctypes.CDLL("libc.so.6").qsort(pair, 2, ctypes.sizeof(ctypes.c_int), compare)


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        fill(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "cpu":
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
