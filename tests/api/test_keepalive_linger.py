"""A kept-alive connection's next request served by the thread that answered it.

server_worker.py: while a worker has no more connections than threads, the thread
that answered on a kept-alive connection waits up to ``http.keepalive_linger_ms``
for its next request instead of handing the connection back to gthread's poller
(an epoll_ctl to register it, another to take it off, per request). The server runs
under strace (its own child: no attaching), which writes every epoll_ctl of the
workers: how many requests went back to the poller is counted from the outside.
The linger here is the longest allowed (1 s), so a client that sends its next
request at once is always in time, however loaded the machine.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.server import RegistryProcess

REQUESTS = 40


def _traced(tmp_path: Path, linger_ms: str, threads: int) -> tuple[RegistryProcess, Path]:
    strace = shutil.which("strace")
    assert strace, "strace is needed (run-tests.sh installs it)"
    tmp_path.mkdir(exist_ok=True)
    trace = tmp_path / "epoll_ctl.trace"
    server = RegistryProcess(tmp_path / "data", workers=1, env={
        "OCIREGISTRY_HTTP__KEEPALIVE_LINGER_MS": linger_ms,
        "OCIREGISTRY_HTTP__THREADS": str(threads),
    }, wrapper=[strace, "-f", "-qq", "-o", str(trace), "-e", "trace=epoll_ctl", "--"])
    return server.start(), trace


def _epoll_ctls(trace: Path) -> int:
    return sum(1 for line in trace.read_text().splitlines() if "epoll_ctl(" in line)


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    reply = conn.getresponse()
    return reply.status, reply.read()


def _put_blob(conn: http.client.HTTPConnection, name: str, data: bytes) -> int:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", body=data,
                 headers={"Content-Type": "application/octet-stream"})
    reply = conn.getresponse()
    reply.read()
    return reply.status


def _run(tmp_path: Path, linger_ms: str, threads: int, connections: int) -> int:
    """epoll_ctl calls while ``connections`` kept-alive connections take turns."""
    server, trace = _traced(tmp_path, linger_ms, threads)
    try:
        conns = [http.client.HTTPConnection(server.host, timeout=60)
                 for _ in range(connections)]
        for conn in conns:  # opened (accepted and registered) before counting
            assert _get(conn, "/v2/") == (200, b"{}")
        before = _epoll_ctls(trace)
        blob = os.urandom(3000)
        for i in range(REQUESTS):
            conn = conns[i % connections]
            if i % 4 == 3:  # a request with a body, read to its end, in the mix
                assert _put_blob(conn, "linger/app", blob) == 201
            else:
                assert _get(conn, "/v2/") == (200, b"{}")
        counted = _epoll_ctls(trace) - before
        for conn in conns:
            conn.close()
        return counted
    finally:
        server.stop()


def test_a_lone_connection_is_served_by_its_thread_not_the_poller(tmp_path: Path) -> None:
    lingering = _run(tmp_path / "on", "1000", threads=4, connections=1)
    handed_back = _run(tmp_path / "off", "0", threads=4, connections=1)
    # Without the linger every answer hands the connection back: register + unregister.
    assert handed_back >= 2 * (REQUESTS - 1)
    assert lingering <= 4


def test_with_more_connections_than_threads_nobody_lingers(tmp_path: Path) -> None:
    # One thread, two connections taking turns: a thread kept waiting on one
    # connection would leave the other's request unanswered for the linger.
    counted = _run(tmp_path, "1000", threads=1, connections=2)
    assert counted >= 2 * (REQUESTS - 1)


def test_a_stop_ends_a_lingering_thread_and_closes_its_connection(tmp_path: Path) -> None:
    server = RegistryProcess(tmp_path / "data", workers=1, env={
        "OCIREGISTRY_HTTP__KEEPALIVE_LINGER_MS": "1000"}).start()
    conn = http.client.HTTPConnection(server.host, timeout=60)
    assert _get(conn, "/v2/") == (200, b"{}")  # its thread now waits for the next request
    assert server.stop(signal.SIGTERM) == 0
    assert conn.sock is not None
    assert conn.sock.recv(1) == b""  # closed by the server, nothing half-sent


@pytest.mark.parametrize("linger_ms", ["0", "2"])
def test_pipelined_and_sequential_requests_are_all_answered(tmp_path: Path,
                                                            linger_ms: str) -> None:
    server = RegistryProcess(tmp_path / "data", workers=1, env={
        "OCIREGISTRY_HTTP__KEEPALIVE_LINGER_MS": linger_ms}).start()
    try:
        conn = http.client.HTTPConnection(server.host, timeout=60)
        for _ in range(20):
            assert _get(conn, "/v2/") == (200, b"{}")
        # Two requests in one send: the second is already buffered when the first ends.
        conn.close()
        conn.connect()
        assert conn.sock is not None
        request = f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode()
        conn.sock.sendall(request * 2)
        received = b""
        while received.count(b"HTTP/1.1 200 OK\r\n") < 2 or not received.endswith(b"{}"):
            chunk = conn.sock.recv(65536)
            assert chunk, f"the connection closed before both answers: {received!r}"
            received += chunk
        conn.close()
    finally:
        server.stop()
