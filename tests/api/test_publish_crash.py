"""A push killed while its blob's name is made but not yet flushed leaves nothing visible.

storage/filesystem.py stage() links the upload to the blob's name and then flushes
the bytes and the name together (storage/durable.py), before the index records the
blob. Here the worker is kill -9'd inside that flush (strace, which the server runs
under, holds the fsync of the name's directory), the bytes under the name are then
spoilt as a power cut could leave them, and the registry restarted on the same data:
the blob is unknown (HEAD, GET, a mount from anywhere), and pushing it again gives
the right bytes under its name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import push_blob, sha256
from tests.server import RegistryProcess, children_of, serving_workers

pytestmark = pytest.mark.single_node("kills one local process in the middle of a push")


def _wait_for(test, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("spoil", ["empty", "garbage"])
def test_a_push_killed_between_link_and_flush_leaves_nothing_visible(tmp_path: Path, spoil):
    strace = shutil.which("strace")
    assert strace, "strace is needed (run-tests.sh installs it)"
    data_dir = tmp_path / "data"
    data = os.urandom(200_000)
    digest = sha256(data)
    directory = data_dir / "blobs" / "sha256" / digest[7:9]
    name = directory / digest[7:]
    # The server runs under strace (its own child: no attaching), which holds every
    # fsync of the blob's directory for 120 s: the push stops in stage(), linked.
    server = RegistryProcess(data_dir, workers=1, wrapper=[
        strace, "-f", "-qq", "-o", "/dev/null", "-P", str(directory), "-e", "trace=fsync",
        "-e", "inject=fsync:delay_enter=120000000", "--"]).start()
    base = os.urandom(3000)
    push_blob(server.url, "crash/base", base)  # a repository to mount from
    assert server.proc is not None
    [tracer_child] = children_of(server.proc.pid)  # strace's child: the gunicorn master
    [worker] = serving_workers(tracer_child)
    outcome: list[object] = []

    def push() -> None:
        try:
            outcome.append(push_blob(server.url, "crash/app", data))
        except Exception as exc:  # noqa: BLE001 - looked at below
            outcome.append(exc)

    try:
        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        _wait_for(name.exists)  # linked: the worker now waits in the directory's flush
        time.sleep(0.2)
        assert not outcome, "the push ended although its flush was held"
        os.kill(worker, signal.SIGKILL)
        # Its threads die once strace lets go of them (a thread held at an fsync's
        # entry with SIGKILL pending never runs the call).
        server.stop(signal.SIGKILL)  # strace itself; the master and the rest with it
        with contextlib.suppress(ProcessLookupError):
            os.kill(tracer_child, signal.SIGKILL)
        pusher.join(timeout=60)
        assert outcome and isinstance(outcome[0], requests.RequestException)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGKILL)
    _wait_for(lambda: not Path(f"/proc/{tracer_child}").exists()
              or "zombie" in Path(f"/proc/{tracer_child}/status").read_text())
    # What a power cut may leave of bytes never flushed: nothing, or other bytes.
    name.write_bytes(b"" if spoil == "empty" else os.urandom(len(data)))

    server = RegistryProcess(data_dir, workers=1).start()
    try:
        url = server.url
        assert requests.head(f"{url}/v2/crash/app/blobs/{digest}", timeout=30).status_code == 404
        assert requests.get(f"{url}/v2/crash/app/blobs/{digest}", timeout=30).status_code == 404
        for source in ("crash/app", "crash/base"):
            r = requests.post(f"{url}/v2/other/blobs/uploads/",
                              params={"mount": digest, "from": source}, timeout=30)
            assert r.status_code == 202, r.text  # not mountable: an upload starts instead
        assert push_blob(url, "crash/app", data) == digest
        r = requests.get(f"{url}/v2/crash/app/blobs/{digest}", timeout=30)
        assert r.status_code == 200 and r.content == data
        assert name.read_bytes() == data
    finally:
        with contextlib.suppress(Exception):
            server.stop()
