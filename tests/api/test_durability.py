"""A 201 survives a power cut (storage.fsync: true, the default).

The order is proved on the system calls of a real registry run under strace
(every thread, on one time line): the upload file is hard-linked (or renamed) to
blobs/<alg>/<xx>/<hex>; the upload file's bytes and the directory that holds the
new name (and, for a directory just made, its parent) are fsynced, together
(storage/durable.py: the flushes may overlap, but each starts after what it must
cover); all of them end before SQLite writes the commit into its WAL, whose fsync
ends before the 201 goes out. (The link and its flushes come before the index
transaction, storage/filesystem.py stage(); a rename is what commit() falls back to.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import sha256
from tests.server import RegistryProcess, children_of

pytestmark = pytest.mark.single_node("traces the system calls of one process")

TRACED = ("fsync,fdatasync,rename,renameat,renameat2,link,linkat,mkdir,mkdirat,"
          "sendto,sendmsg,write,writev,pwrite64")
# strace -ttt -T -y: "<start> fsync(7</data/blobs/sha256/ab>) = 0 <seconds taken>"
_CALL = re.compile(r"^(?P<start>\d+\.\d+) (?P<name>\w+)\((?P<args>.*)\)\s+= (?P<ret>-?\d+)"
                   r".*<(?P<took>\d+\.\d+)>$")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_STRINGS = re.compile(r'"((?:[^"\\]|\\.)*)"')
SYNCS = ("fsync", "fdatasync")


@dataclass
class Call:
    name: str
    path: str  # the fd's path, or the first string argument
    args: str
    start: float
    end: float


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
        start = float(match["start"])
        calls.append(Call(match["name"], path, args, start, start + float(match["took"])))
    return calls


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[RegistryProcess, Path]]:
    strace = shutil.which("strace")
    assert strace, "strace is needed (run-tests.sh installs it)"
    prefix = tmp_path / "trace"
    server = RegistryProcess(
        tmp_path / "data", workers=1,
        wrapper=[strace, "-f", "-ff", "-ttt", "-T", "-y", "-s", "64", "-e", f"trace={TRACED}",
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

    # Every thread's calls on one time line. strace writes a call's line once the
    # call has returned, which may be just after the client has the response: read
    # until the trace shows the 201 going out (or give up).
    deadline = time.monotonic() + 60
    while True:
        calls = sorted((c for path in tmp.glob("trace.*") for c in parse(path)),
                       key=lambda c: c.start)
        links = [c for c in calls if publishes(c)]
        sent = links and any("HTTP/1.1 201" in c.args and c.start > links[0].end
                             for c in calls)
        if sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(links) == 1, "no (or more than one) call put the blob in place"
    link = links[0]

    def first(after: float, test: Callable[[Call], bool]) -> Call:
        for c in calls:
            if c.start >= after and test(c):
                return c
        raise AssertionError(f"not found after {after}: {[c.name for c in calls]}")

    upload = _STRINGS.findall(link.args)[0]
    assert "/uploads/" in upload
    # the commit: the first WAL write after the name was made
    commit = first(link.end, lambda c: c.name.startswith("pwrite") and c.path == wal)
    written = [c.end for c in calls if c.path == upload and c.name.startswith(("write", "pwrite"))]
    assert written, "the upload's bytes were written"

    def synced(path: str, after: float) -> Call:
        """A flush of ``path`` that started after ``after`` and ended before the commit."""
        done = [c for c in calls if c.name in SYNCS and c.path == path
                and c.start >= after and c.end <= commit.start]
        assert done, f"{path} not fsynced between {after} and the commit at {commit.start}"
        return done[0]

    synced(upload, max(written))  # the bytes
    synced(directory, link.end)  # the name
    wal_sync = first(commit.end, lambda c: c.name in SYNCS and c.path == wal)
    response = first(wal_sync.end, lambda c: c.name in ("sendto", "sendmsg", "write", "writev")
                     and "HTTP/1.1 201" in c.args)
    assert link.end <= commit.start < wal_sync.end <= response.start
    # every directory made for the blob is flushed in its parent before the commit
    made = [c for c in calls if c.name.startswith("mkdir") and c.path.startswith(blobs)
            and c.end <= commit.start]
    assert made, "a fresh registry makes blobs/sha256/<xx>: the trace should show it"
    for c in made:
        synced(os.path.dirname(c.path), c.end)


def test_a_long_upload_reaches_the_disk_while_it_is_still_received(traced):
    # storage.flush_ahead (the default): the upload's file is flushed as it grows, so
    # the fsync that publishes the blob waits for the tail only (storage/flush_ahead.py)
    server, tmp = traced
    data = os.urandom(13 << 20)
    digest = sha256(data)
    r = requests.post(f"{server.url}/v2/dur/ahead/blobs/uploads/", timeout=60)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[1].split("?")[0]
    r = requests.patch(f"{server.url}{location}", data=data, timeout=120,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    r = requests.put(f"{server.url}{r.headers['Location']}", params={"digest": digest},
                     timeout=120)
    assert r.status_code == 201, r.text
    got = requests.get(f"{server.url}/v2/dur/ahead/blobs/{digest}", timeout=60)
    assert got.status_code == 200 and got.content == data
    upload = str((server.data_dir / "uploads" / upload_id).resolve())
    deadline = time.monotonic() + 60
    while True:  # strace writes a line once its call has returned
        calls = [c for path in tmp.glob("trace.*") for c in parse(path) if c.path == upload]
        writes = [c for c in calls if c.name.startswith(("write", "pwrite"))]
        flushes = [c for c in calls if c.name in SYNCS]
        if (writes and flushes and max(c.start for c in flushes) > max(c.end for c in writes)) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert writes, "the upload's bytes were written"
    last_write = max(c.end for c in writes)
    early = [c for c in flushes if c.start < last_write]
    assert early, "the file was not flushed while the body was still arriving"
    assert any(c.start >= last_write for c in flushes), "no flush after the last byte"
