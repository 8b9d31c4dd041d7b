"""SIGTERM (a rolling restart): requests in flight finish, idle connections close at once.

A proxy in front (nginx, an ingress) keeps connections to each instance open and
reuses them. If a stopping worker left its idle ones open but unread until its
last upload finished, the proxy would send requests into them that nobody
answers, and a POST or PATCH cannot be replayed on another instance: the client
would get a 502. server_worker.py closes them as soon as the stop begins.
"""

from __future__ import annotations

import http.client
import signal
import socket
import time

from tests.server import RegistryProcess


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_sigterm_closes_idle_connections_and_finishes_the_upload_in_flight(tmp_path):
    server = RegistryProcess(tmp_path / "data", workers=1).start()
    try:
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        idle.request("GET", "/v2/")
        r = idle.getresponse()
        r.read()
        assert r.status == 200 and r.getheader("Connection", "").lower() != "close"

        busy = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        busy.request("POST", "/v2/drain/blobs/uploads/")
        r = busy.getresponse()
        r.read()
        assert r.status == 202
        location = r.getheader("Location")
        body = b"x" * 200_000
        busy.putrequest("PATCH", location)
        busy.putheader("Content-Type", "application/octet-stream")
        busy.putheader("Content-Length", str(len(body)))
        busy.endheaders()
        busy.send(body[:1000])  # the upload is in flight, and stays so
        time.sleep(0.5)

        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        # The idle connection is closed long before the upload ends (graceful
        # timeout: 30 s); before, it stayed open and unread until then.
        assert _closed_by_server(idle.sock, timeout=20), "idle connection left open"
        # New connections are refused: a proxy passes them to another instance.
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections while stopping"
            time.sleep(0.1)
        assert server.proc.poll() is None, "the server did not wait for the upload"

        busy.send(body[1000:])
        r = busy.getresponse()
        r.read()
        assert r.status == 202, r.status
        assert r.getheader("Range") == f"0-{len(body) - 1}"
        assert r.getheader("Connection", "").lower() == "close"
        assert server.proc.wait(timeout=60) == 0
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()
        else:
            server._log.close()


