"""The process bench/write_instructions.py runs under callgrind: the small write
requests of bench/compare.py's set-up and push-flow steps, one kind at a time.

    write_instructions_worker.py fill TREE DATA            # a base repository to mount from
    write_instructions_worker.py run TREE DATA N CASE      # N requests of kind CASE, counted
    write_instructions_worker.py cpu TREE DATA N CASE      # the same, CPU seconds (no valgrind)

Each request is made through the WSGI callable in process (no HTTP server). What a
request needs first (its upload session, the blobs a manifest names) is made
before it, outside the count: only the request itself runs inside libc's qsort
comparator, which callgrind is told to count (``--toggle-collect=*qsort*``).
TREE's src/ goes first on sys.path, so the build measured is that tree's.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CASES = [
    "manifest PUT, new tag (set-up: 1,000 tags)",
    "blob mount (new repository)",
    "manifest PUT, new repository (after the mount)",
    "blob HEAD, unknown (push flow)",
    "upload POST (push flow)",
    "upload PATCH, 64 KiB (push flow)",
    "upload PUT, no body (push flow)",
    "monolithic PUT, 1 KiB config (push flow)",
    "manifest PUT, 10 layers (push flow)",
]
PATCH_SIZE = 64 << 10


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": _digest(config)},
        "layers": [{"mediaType": LAYER_TYPE, "size": len(b), "digest": _digest(b)}
                   for b in layers],
    }, indent=3).encode()


def _app(tree: str, data: str) -> Any:
    sys.path.insert(0, os.path.join(tree, "src"))
    os.environ["OCIREGISTRY_DATA_DIR"] = data
    import ociregistry
    from ociregistry.config import load_settings
    from ociregistry.runtime import build_runtime
    from ociregistry.web.app import create_app

    assert ociregistry.__file__.startswith(tree), ociregistry.__file__
    app = create_app(runtime=build_runtime(load_settings(), migrate=True))
    # What start-up made is never garbage: out of the collector's way, so that a full
    # collection (tens of ms over ~100,000 objects) does not land at random in the count.
    gc.collect()
    gc.freeze()
    return app


def fill(tree: str, data: str) -> None:
    client = _app(tree, data).test_client()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": []}}).encode()
    for repo in ("base/app", "base/tags"):  # mounted from; tagged 1,000 times
        r = client.post(f"/v2/{repo}/blobs/uploads/?digest={_digest(config)}", data=config)
        assert r.status_code == 201, r.data
        r = client.put(f"/v2/{repo}/manifests/latest", data=_manifest(config, []),
                       headers={"Content-Type": DOCKER_MANIFEST})
        assert r.status_code == 201, r.data
    with open(os.path.join(data, "config.json"), "wb") as f:
        f.write(config)


class Driver:
    """Makes requests through the app; ``counted`` ones go through ``measure``."""

    def __init__(self, app: Any, data: str) -> None:
        from werkzeug.test import EnvironBuilder

        self.app, self.builder = app, EnvironBuilder
        with open(os.path.join(data, "config.json"), "rb") as f:
            self.config = f.read()
        self.status = ""
        self.headers: dict[str, str] = {}

    def environ(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> dict[str, Any]:
        query = ""
        if "?" in path:
            path, query = path.split("?", 1)
        env = self.builder(method=method, path=path, query_string=query,
                           headers={"Host": "localhost", **(headers or {})},
                           environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        return env

    def call(self, env: dict[str, Any]) -> None:
        def start_response(status: str, headers: list, exc_info: Any = None) -> None:
            self.status, self.headers = status, dict(headers)

        out = self.app(env, start_response)
        for _ in out:
            pass
        if hasattr(out, "close"):
            out.close()

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None, expect: str = "") -> dict[str, str]:
        self.call(self.environ(method, path, body, headers))
        assert self.status.startswith(expect), (method, path, self.status)
        return self.headers

    def push(self, repo: str, data: bytes) -> None:
        location = self.request("POST", f"/v2/{repo}/blobs/uploads/", expect="202")["Location"]
        self.request("PUT", f"{location}?digest={_digest(data)}", data,
                     {"Content-Type": "application/octet-stream"}, expect="201")

    def case(self, case: int, k: int) -> tuple[dict[str, Any], str]:
        """Make what request ``k`` of kind ``case`` needs; its environ and expected status."""
        cfg = _digest(self.config)
        if case == 0:
            return (self.environ("PUT", f"/v2/base/tags/manifests/t{k:05d}",
                                 _manifest(self.config, []),
                                 {"Content-Type": DOCKER_MANIFEST}), "201")
        if case == 1:
            return self.environ("POST", f"/v2/c/r{k:05d}/blobs/uploads/?mount={cfg}"
                                        "&from=base/app"), "201"
        if case == 2:
            self.request("POST", f"/v2/c/r{k:05d}/blobs/uploads/?mount={cfg}&from=base/app",
                         expect="201")
            return (self.environ("PUT", f"/v2/c/r{k:05d}/manifests/latest",
                                 _manifest(self.config, []),
                                 {"Content-Type": DOCKER_MANIFEST}), "201")
        if case == 3:
            return self.environ("HEAD", f"/v2/flow/p/blobs/{_digest(os.urandom(8))}"), "404"
        if case == 4:
            return self.environ("POST", "/v2/flow/p/blobs/uploads/"), "202"
        if case == 5:
            location = self.request("POST", "/v2/flow/p/blobs/uploads/", expect="202")["Location"]
            return (self.environ("PATCH", location, os.urandom(PATCH_SIZE),
                                 {"Content-Type": "application/octet-stream"}), "202")
        if case == 6:
            location = self.request("POST", "/v2/flow/p/blobs/uploads/", expect="202")["Location"]
            body = os.urandom(PATCH_SIZE)
            location = self.request("PATCH", location, body,
                                    {"Content-Type": "application/octet-stream"},
                                    expect="202")["Location"]
            return self.environ("PUT", f"{location}?digest={_digest(body)}"), "201"
        if case == 7:
            location = self.request("POST", "/v2/flow/p/blobs/uploads/", expect="202")["Location"]
            body = os.urandom(1024)
            return (self.environ("PUT", f"{location}?digest={_digest(body)}", body,
                                 {"Content-Type": "application/octet-stream"}), "201")
        if case == 8:
            repo = f"flow/m{k:05d}"
            layers = [os.urandom(512) for _ in range(10)]
            config = json.dumps({"seed": k}).encode()
            for blob in [*layers, config]:
                self.push(repo, blob)
            return (self.environ("PUT", f"/v2/{repo}/manifests/latest",
                                 _manifest(config, layers),
                                 {"Content-Type": DOCKER_MANIFEST}), "201")
        raise ValueError(case)


def run(tree: str, data: str, n: int, case: int, counted: Callable[[Callable[[], None]], None]
        ) -> None:
    logging.basicConfig(level=logging.INFO, filename=os.path.join(data, "registry.log"))
    driver = Driver(_app(tree, data), data)
    for k in range(n + 20):  # the first 20 warm up, uncounted
        env, expect = driver.case(case, k)
        if k < 20:
            driver.call(env)
        else:
            counted(lambda env=env: driver.call(env))
        assert driver.status.startswith(expect), (CASES[case], driver.status)


def under_callgrind(work: Callable[[], None]) -> None:
    """``work()`` inside qsort's comparator: the only code callgrind counts."""
    def compare(_a: Any, _b: Any) -> int:
        work()
        return 0

    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(compare)
    pair = (ctypes.c_int * 2)(2, 1)
    ctypes.CDLL("libc.so.6").qsort(pair, 2, ctypes.sizeof(ctypes.c_int), fn)


def main() -> None:
    mode, tree, data = sys.argv[1:4]
    if mode == "fill":
        fill(tree, data)
        return
    n, case = int(sys.argv[4]), int(sys.argv[5])
    if mode == "run":
        run(tree, data, n, case, under_callgrind)
        return
    spent = [0.0]

    def timed(work: Callable[[], None]) -> None:
        start = time.process_time()
        work()
        spent[0] += time.process_time() - start

    run(tree, data, n, case, timed)
    print(spent[0] / n)


if __name__ == "__main__":
    main()
