"""An upload continued by another worker process still gets the right digest.

Each worker keeps the running hash of the uploads it served; a chunk that lands
on another worker makes that one rebuild the hash from the partial file. The
tests below pin connections to known workers by looking up, in /proc, which
gunicorn worker process holds the server side of each TCP connection (and
briefly pausing a worker so that the next connection goes to another one).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.helpers import sha256, sha512
from tests.server import RegistryProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

WORKERS = 3


@pytest.fixture(scope="module")
def multi_worker(tmp_path_factory):
    server = RegistryProcess(tmp_path_factory.mktemp("workers") / "data",
                             workers=WORKERS).start()
    yield server
    server.stop()


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may contain spaces, so split after ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def _worker_pids(server: RegistryProcess) -> list[int]:
    assert server.proc is not None
    deadline = time.monotonic() + 30
    while True:
        pids = [pid for pid in _all_pids() if _parent(pid) == server.proc.pid]
        if len(pids) >= WORKERS or time.monotonic() > deadline:
            return pids
        time.sleep(0.1)


def _server_side_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the accepted socket for our client connection, once accepted."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port and inode):
                return inode
    return None


def _owner(server: RegistryProcess, conn: http.client.HTTPConnection) -> int | None:
    """The pid of the worker that accepted this connection (None if none yet)."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inode = _server_side_inode(server.port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in _worker_pids(server):
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None


def _wait_owner(server: RegistryProcess, conn: http.client.HTTPConnection) -> int:
    # Idle connections are accepted and parked by a worker: wait for that.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        owner = _owner(server, conn)
        if owner is not None:
            return owner
        time.sleep(0.02)
    pytest.fail("no worker accepted the connection")


def _connections_on_distinct_workers(server: RegistryProcess, count: int = 2
                                     ) -> list[tuple[int, http.client.HTTPConnection]]:
    """Open ``count`` connections, each held by a different worker.

    The kernel hands new connections to whichever worker wakes first, often the
    same one every time. So once a worker holds a connection it is paused
    (SIGSTOP) while the next connection is opened, and resumed right after:
    a paused worker cannot accept, another one must.
    """
    chosen: list[tuple[int, http.client.HTTPConnection]] = []
    paused: list[int] = []
    try:
        while len(chosen) < count:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.connect()
            owner = _wait_owner(server, conn)
            assert owner not in paused
            chosen.append((owner, conn))
            if len(chosen) < count:
                os.kill(owner, signal.SIGSTOP)
                paused.append(owner)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    return chosen


def _send(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"",
          headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return response


def _path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _patch(conn, location: str, chunk: bytes, start: int) -> http.client.HTTPResponse:
    return _send(conn, "PATCH", _path(location), chunk, {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{start}-{start + len(chunk) - 1}",
    })


def test_chunks_alternating_between_workers_give_the_right_digest(multi_worker):
    (pid_a, a), (pid_b, b) = _connections_on_distinct_workers(multi_worker)
    assert pid_a != pid_b
    repo = "workers/alternate"
    data = os.urandom(4 * 300_000)
    chunks = [data[i:i + 300_000] for i in range(0, len(data), 300_000)]
    try:
        r = _send(a, "POST", f"/v2/{repo}/blobs/uploads/")
        assert r.status == 202
        location = r.getheader("Location")
        offset = 0
        # A, B, A, B: every chunk after the first lands on the worker that did
        # not see the previous one, so its cached hash (if any) is stale.
        for conn, chunk in zip([a, b, a, b], chunks, strict=True):
            r = _patch(conn, location, chunk, offset)
            assert r.status == 202
            offset += len(chunk)
            assert r.getheader("Range") == f"0-{offset - 1}"
            location = r.getheader("Location")
        # Both connections were served by the workers they were opened on.
        assert _owner(multi_worker, a) == pid_a
        assert _owner(multi_worker, b) == pid_b
        r = _send(a, "PUT", _path(location) + f"?digest={sha256(data)}")
        assert r.status == 201
        assert r.getheader("Docker-Content-Digest") == sha256(data)
    finally:
        a.close()
        b.close()
    blob = requests.get(f"{multi_worker.url}/v2/{repo}/blobs/{sha256(data)}")
    assert blob.status_code == 200
    assert blob.content == data


def test_final_chunk_on_another_worker(multi_worker):
    (_, a), (_, b) = _connections_on_distinct_workers(multi_worker)
    repo = "workers/final"
    data = os.urandom(500_000)
    try:
        r = _send(a, "POST", f"/v2/{repo}/blobs/uploads/",
                  headers={"Content-Length": "0"})
        location = r.getheader("Location")
        assert _patch(a, location, data[:400_000], 0).status == 202
        r = _send(b, "PUT", _path(location) + f"?digest={sha256(data)}", data[400_000:],
                  {"Content-Type": "application/octet-stream"})
        assert r.status == 201
        assert r.getheader("Docker-Content-Digest") == sha256(data)
    finally:
        a.close()
        b.close()
    assert requests.get(f"{multi_worker.url}/v2/{repo}/blobs/{sha256(data)}").content == data


def test_sha512_upload_across_workers(multi_worker):
    (_, a), (_, b) = _connections_on_distinct_workers(multi_worker)
    repo = "workers/sha512"
    data = os.urandom(300_000)
    try:
        r = _send(b, "POST", f"/v2/{repo}/blobs/uploads/?digest-algorithm=sha512")
        location = r.getheader("Location")
        assert _patch(b, location, data[:100_000], 0).status == 202
        assert _patch(a, location, data[100_000:200_000], 100_000).status == 202
        assert _patch(b, location, data[200_000:], 200_000).status == 202
        r = _send(a, "PUT", _path(location) + f"?digest={sha512(data)}")
        assert r.status == 201
        assert r.getheader("Docker-Content-Digest") == sha512(data)
    finally:
        a.close()
        b.close()
    assert requests.get(f"{multi_worker.url}/v2/{repo}/blobs/{sha512(data)}").content == data


def test_truncated_chunk_on_one_worker_then_continued_on_another(multi_worker):
    (_, a), (_, b) = _connections_on_distinct_workers(multi_worker)
    repo = "workers/truncated"
    data = os.urandom(300_000)
    try:
        r = _send(a, "POST", f"/v2/{repo}/blobs/uploads/")
        location = r.getheader("Location")
        assert _patch(a, location, data[:100_000], 0).status == 202
        # B receives a chunk whose body stops half way: the client hangs up.
        assert b.sock is not None
        b.sock.sendall((
            f"PATCH {_path(location)} HTTP/1.1\r\nHost: {multi_worker.host}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Range: 100000-199999\r\nContent-Length: 100000\r\n\r\n"
        ).encode() + data[100_000:150_000])
        b.sock.shutdown(socket.SHUT_WR)
        b.sock.settimeout(30)
        try:
            while b.sock.recv(65536):
                pass
        except OSError:
            pass
        status = _send(a, "GET", _path(location))
        assert status.status == 204
        assert status.getheader("Range") == "0-99999"
        assert _patch(a, location, data[100_000:], 100_000).status == 202
        r = _send(a, "PUT", _path(location) + f"?digest={sha256(data)}")
        assert r.status == 201
    finally:
        a.close()
        b.close()
    assert requests.get(f"{multi_worker.url}/v2/{repo}/blobs/{sha256(data)}").content == data


def test_a_new_connection_per_chunk_gives_the_right_digest(multi_worker):
    """As a client without keep-alive does: every request on a fresh connection."""
    repo = "workers/fresh-connections"
    data = os.urandom(40 * 16_384)
    r = requests.post(f"{multi_worker.url}/v2/{repo}/blobs/uploads/",
                      headers={"Connection": "close"})
    location = r.headers["Location"]
    offset = 0
    for i in range(0, len(data), 16_384):
        chunk = data[i:i + 16_384]
        r = requests.patch(
            multi_worker.url + _path(location), data=chunk,
            headers={"Connection": "close", "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                     "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 202, r.text
        offset += len(chunk)
        location = r.headers["Location"]
    r = requests.put(multi_worker.url + _path(location), params={"digest": sha256(data)},
                     headers={"Connection": "close"})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    blob = requests.get(f"{multi_worker.url}/v2/{repo}/blobs/{sha256(data)}")
    assert blob.content == data
