"""A 201 survives a power cut (storage.fsync: true, the default).

The order is proved on the system calls of a real registry run under strace:
the upload file is fsynced, hard-linked (or renamed) to blobs/<alg>/<xx>/<hex>,
the directory that holds the new name is fsynced (and, for a directory just
made, its parent), then SQLite's commit syncs its WAL, and only then does the
201 go out. (The link and its directory flush come before the index transaction,
storage/filesystem.py stage(); a rename is what commit() falls back to.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import sha256
from tests.server import RegistryProcess, children_of

pytestmark = pytest.mark.single_node("traces the system calls of one process")

TRACED = ("fsync,fdatasync,rename,renameat,renameat2,link,linkat,mkdir,mkdirat,"
          "sendto,sendmsg,write,writev")
# strace -y: fd arguments carry their path, as in fsync(7</data/blobs/sha256/ab>)
_CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+= (?P<ret>-?\d+)")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_STRINGS = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class Call:
    name: str
    path: str  # the fd's path, or the first string argument
    args: str


def parse(trace: Path) -> list[Call]:
    calls = []
    for line in trace.read_text(errors="replace").splitlines():
        match = _CALL.match(line)
        if not match or match["ret"].startswith("-"):
            continue
        args = match["args"]
        fd = _FD_PATH.match(args)
        strings = _STRINGS.findall(args)
        path = fd["path"] if fd else (strings[0] if strings else "")
        calls.append(Call(match["name"], path, args))
    return calls


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[RegistryProcess, Path]]:
    strace = shutil.which("strace")
    assert strace, "strace is needed (run-tests.sh installs it)"
    prefix = tmp_path / "trace"
    server = RegistryProcess(
        tmp_path / "data", workers=1,
        wrapper=[strace, "-f", "-ff", "-y", "-s", "64", "-e", f"trace={TRACED}",
                 "-o", str(prefix), "--"],
    ).start()
    yield server, tmp_path
    # SIGTERM the traced server itself; strace exits with it
    assert server.proc is not None
    for pid in children_of(server.proc.pid):
        with contextlib.suppress(ProcessLookupError):  # (a child that just left)
            os.kill(pid, signal.SIGTERM)
    server.proc.wait(timeout=120)


def test_a_pushed_blob_is_on_disk_before_its_201(traced):
    server, tmp = traced
    data = os.urandom(100_000)
    digest = sha256(data)
    r = requests.post(f"{server.url}/v2/dur/able/blobs/uploads/", params={"digest": digest},
                      data=data, timeout=120)
    assert r.status_code == 201, r.text
    hexdigest = digest.split(":")[1]
    blobs = str((server.data_dir / "blobs").resolve())
    directory = f"{blobs}/sha256/{hexdigest[:2]}"
    target = f"{directory}/{hexdigest}"
    wal = str((server.data_dir / "registry.db-wal").resolve())

    def publishes(c: Call) -> bool:  # the blob's name made: a hard link or a rename
        return c.name.startswith(("rename", "link")) and target in c.args

    # the thread that served the push: its trace holds the link. strace writes a
    # call's line once the call has returned, which may be just after the client has
    # the response: read until the trace shows the 201 going out (or give up).
    deadline = time.monotonic() + 60
    while True:
        threads = [parse(path) for path in tmp.glob("trace.*")]
        served = [calls for calls in threads
                  if any(publishes(c) for c in calls)]
        sent = served and any("HTTP/1.1 201" in c.args for c in served[0])
        if sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(served) == 1, "no (or more than one) thread put the blob in place"
    calls = served[0]

    def first(start: int, test) -> int:  # noqa: ANN001
        for i in range(start, len(calls)):
            if test(calls[i]):
                return i
        raise AssertionError(f"not found after call {start}: {[c.name for c in calls]}")

    rename = first(0, publishes)
    upload = _STRINGS.findall(calls[rename].args)[0]
    assert "/uploads/" in upload
    sync_upload = max(i for i, c in enumerate(calls[:rename])
                      if c.name in ("fsync", "fdatasync") and c.path == upload)
    assert sync_upload < rename
    sync_dir = first(rename, lambda c: c.name in ("fsync", "fdatasync") and c.path == directory)
    commit = first(sync_dir, lambda c: c.name in ("fsync", "fdatasync") and c.path == wal)
    response = first(commit, lambda c: c.name in ("sendto", "sendmsg", "write", "writev")
                     and "HTTP/1.1 201" in c.args)
    assert sync_upload < rename < sync_dir < commit < response
    # every directory made for the blob is flushed in its parent before the commit
    made = [(i, c.path) for i, c in enumerate(calls[:commit])
            if c.name.startswith("mkdir") and c.path.startswith(blobs)]
    assert made, "a fresh registry makes blobs/sha256/<xx>: the trace should show it"
    for i, path in made:
        parent = os.path.dirname(path)
        assert any(c.name in ("fsync", "fdatasync") and c.path == parent
                   for c in calls[i:commit]), f"{parent} not fsynced after mkdir {path}"
