"""The parsed tag rules a worker keeps (lifecycle/tag_rules.py) are never stale: a rule
added or deleted through the API on one worker decides the very next push on another.

Each worker reads the stored rules in the transaction that changes a tag and parses
them only when the rows differ from its last read; these tests pin two connections
to two different gunicorn workers (as tests/api/test_workers.py does), fill both
workers' caches, change the rules on one, and push on the other.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import OCI_MANIFEST
from tests.lifecycle_tags.support import PASSWORDS, digest_of, push_image

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _owner(master: int, port: int, conn: http.client.HTTPConnection) -> int | None:
    """The worker holding the server side of ``conn`` (from /proc/net/tcp and fds)."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if (int(f[1].rsplit(":", 1)[1], 16) == port
                    and int(f[2].rsplit(":", 1)[1], 16) == client_port and int(f[9])):
                inode = int(f[9])
    if inode is None:
        return None
    for pid in _children(master):
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]"
                   for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except OSError:
            continue
    return None


def _two_workers(master: int, port: int) -> list[http.client.HTTPConnection]:
    """Two connections held by two different workers: once the first worker holds
    one, it is paused (SIGSTOP) while the second connects, so another must accept."""
    conns: list[http.client.HTTPConnection] = []
    paused: int | None = None
    try:
        while len(conns) < 2:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.connect()
            deadline = time.monotonic() + 30
            while (owner := _owner(master, port, conn)) is None:
                if time.monotonic() > deadline:
                    pytest.fail("no worker accepted the connection")
                time.sleep(0.02)
            assert owner != paused
            conns.append(conn)
            if len(conns) < 2:
                os.kill(owner, signal.SIGSTOP)
                paused = owner
    finally:
        if paused is not None:
            os.kill(paused, signal.SIGCONT)
    return conns


def _request(conn: http.client.HTTPConnection, who: str, method: str, path: str,
             body: bytes = b"", content_type: str = "application/json") -> tuple[int, bytes]:
    token = base64.b64encode(f"{who}:{PASSWORDS[who]}".encode()).decode()
    conn.request(method, path, body=body, headers={
        "Authorization": f"Basic {token}", "Content-Type": content_type})
    response = conn.getresponse()
    return response.status, response.read()


@pytest.fixture
def pinned(live):
    from urllib.parse import urlsplit

    port = urlsplit(live.url).port
    server_pid = None
    for entry in Path("/proc").iterdir():  # the gunicorn master: listens on the port
        if entry.name.isdigit() and _children(int(entry.name)):
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(live.data_dir).encode() in cmdline:
                server_pid = int(entry.name)
                break
    assert server_pid is not None, "registry master process not found"
    conns = _two_workers(server_pid, port)
    yield conns
    for conn in conns:
        conn.close()


def test_a_rule_changed_on_one_worker_decides_the_next_push_on_the_other(live, suffix, pinned):
    a, b = pinned
    alice = live.session("alice")
    repo = f"cache/{suffix}"
    # Two manifests whose blobs the repository holds; each worker caches the rules
    # (none matching) by pushing a new tag.
    first, manifest, _ = push_image(alice, live.url, repo, None)
    second, other, _ = push_image(alice, live.url, repo, None)
    for conn, tag in ((a, "warm-a"), (b, "warm-b"), (b, "rc-1")):
        status, body = _request(conn, "alice", "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                                OCI_MANIFEST)
        assert status == 201, body
    for _ in range(2):
        # Added on worker A: worker B refuses the move at once.
        status, body = _request(a, "root", "POST", "/api/v1/tag-rules", json.dumps({
            "kind": "immutable", "repositories": repo, "tags": "rc-*"}).encode())
        assert status == 201, body
        rule_id = json.loads(body)["id"]
        status, body = _request(b, "alice", "PUT", f"/v2/{repo}/manifests/rc-1", other,
                                OCI_MANIFEST)
        assert status == 403 and b"immutable" in body, (status, body)
        # Deleted on worker A: worker B lets the move through at once (and back).
        status, body = _request(a, "root", "DELETE", f"/api/v1/tag-rules/{rule_id}")
        assert status == 204, body
        status, body = _request(b, "alice", "PUT", f"/v2/{repo}/manifests/rc-1", other,
                                OCI_MANIFEST)
        assert status == 201, (status, body)
        status, body = _request(b, "alice", "PUT", f"/v2/{repo}/manifests/rc-1", manifest,
                                OCI_MANIFEST)
        assert status == 201, (status, body)
        a, b = b, a  # and the other way round
    assert digest_of(manifest) == first and digest_of(other) == second
