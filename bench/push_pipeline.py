"""One push's pipeline without HTTP, stage settings side by side, and what the disk did.

    .venv/bin/python bench/push_pipeline.py [--runs 4] [--blob-mib 256]
        [--configs '[{"ring": 4, "batch": 2, "read_back": true}, ...]']

A child process sendfile()s a blob into a socket pair; this process receives it into
a ring of page-aligned 1 MiB buffers with recv_into (as web/body.py does), hashes it
on one helper thread and writes it around the page cache on another
(core/hashpipe.py, storage/direct_write.py), then fsyncs the file as stage() does.
Each configuration sets the ring's size (``ring``: hashpipe.BUFFERS), the chunks per
writev (``batch``: hashpipe.WRITE_BATCH), whether new blobs are read back into the
cache (``read_back``: storage.cache_new_blobs) and whether populating is used for
that (``populate``: false reads back with readahead(2) only). Configurations
alternate run by run; for each the median MiB/s (receive to fsync), this process's
CPU per MiB (receive, hash, write and the read-back thread; the sender excluded),
and, from /sys/block/<dev>/stat over the run and its read-back, the MiB the disk read
and wrote and its read and write I/O counts. No HTTP, no database: what the disk and
the three threads cost alone (docs/performance.md, "Pushes, round three").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from bench.data import make_blob  # noqa: E402
from ociregistry.core import hashpipe  # noqa: E402
from ociregistry.core.hashstate import new_resumable  # noqa: E402
from ociregistry.storage import direct_write, populate  # noqa: E402
from ociregistry.storage.filesystem import FilesystemStorage  # noqa: E402
from ociregistry.web.body import BUFFER, _buffer  # noqa: E402

MiB = 1 << 20
_LIBC = populate._LIBC
DEFAULT = ('[{"ring": 4, "batch": 2, "read_back": true},'
           ' {"ring": 4, "batch": 2, "read_back": false}]')


def disk_of(path: Path) -> Path | None:
    """/sys/block/<dev>/stat of the device holding ``path`` (a partition's disk)."""
    dev = os.stat(path).st_dev
    link = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not link.exists():
        return None
    real = link.resolve()
    stat = real / "stat"
    return stat if (real / "queue").exists() else real.parent / "stat"


def disk_counters(stat: Path | None) -> list[int]:
    return [int(x) for x in stat.read_text().split()] if stat else [0] * 11


def received(sock: socket.socket, total: int, ring: int):
    views = [_buffer(BUFFER) for _ in range(ring)]
    turn, remaining = 0, total
    while remaining:
        view = views[turn]
        turn = (turn + 1) % ring
        want, n = min(len(view), remaining), 0
        while n < want:
            got = sock.recv_into(view[n:], want - n)
            if not got:
                raise EOFError("the sender stopped")
            n += got
        remaining -= n
        yield view[:n]


def one_push(blob: Path, size: int, root: str, cfg: dict, stat: Path | None) -> dict:
    hashpipe.BUFFERS, hashpipe.WRITE_BATCH = cfg["ring"], cfg["batch"]
    populate._LIBC = _LIBC if cfg.get("populate", True) else None
    storage = FilesystemStorage(root, fsync=True, direct_writes=cfg.get("direct", True),
                                cache_new_blobs=cfg["read_back"])
    upload_id = os.urandom(8).hex()
    storage.create_upload(upload_id)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the sender
        ours.close()
        with open(blob, "rb") as f:
            theirs.sendfile(f, 0, size)
        theirs.close()
        os._exit(0)
    theirs.close()
    disk0 = disk_counters(stat)
    t0, cpu0 = time.perf_counter(), os.times()
    with storage.append_upload(upload_id) as writer:
        hasher = new_resumable("sha256")
        pipe = hashpipe.HashPipeline(hasher, writer.write_many)
        for chunk in pipe.chunks(received(ours, size, cfg["ring"])):
            pipe.add(chunk)
        pipe.drain()
        writer.flush()
        writer.stage("sha256:" + hasher.hexdigest())
    wall = time.perf_counter() - t0
    direct_write.read_backs_done()
    time.sleep(0.3)  # the last read-back's I/O completes on its own time
    cpu1, disk1 = os.times(), disk_counters(stat)
    os.waitpid(pid, 0)
    ours.close()
    storage.delete_upload(upload_id)
    shutil.rmtree(os.path.join(root, "blobs", "sha256"), ignore_errors=True)
    return {"mibs": size / MiB / wall,
            "cpu": (cpu1.user - cpu0.user + cpu1.system - cpu0.system) * 1000 / (size / MiB),
            "read_mib": (disk1[2] - disk0[2]) * 512 / MiB, "reads": disk1[0] - disk0[0],
            "write_mib": (disk1[6] - disk0[6]) * 512 / MiB, "writes": disk1[4] - disk0[4]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--blob-mib", type=int, default=256)
    p.add_argument("--configs", default=DEFAULT, help="JSON list of stage settings")
    args = p.parse_args(argv)
    configs = json.loads(args.configs)
    size = args.blob_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="push-pipeline-", dir="/var/tmp"))
    try:
        blob = make_blob(work / "blob", size, 3).path
        root = str(work / "root")
        stat = disk_of(work)
        results: list[list[dict]] = [[] for _ in configs]
        for _ in range(args.runs):
            for i, cfg in enumerate(configs):
                results[i].append(one_push(blob, size, root, cfg, stat))
        print(f"{args.runs} runs, {args.blob_mib} MiB, load {os.getloadavg()[0]:.1f}; medians")
        for cfg, runs in zip(configs, results, strict=True):
            def med(key: str, runs: list[dict] = runs) -> float:
                return statistics.median(r[key] for r in runs)
            print(f"{json.dumps(cfg)}: {med('mibs'):,.0f} MiB/s "
                  f"({', '.join(format(r['mibs'], ',.0f') for r in runs)}), "
                  f"CPU {med('cpu'):.2f} ms/MiB; disk read {med('read_mib'):.0f} MiB in "
                  f"{med('reads'):.0f} I/Os, wrote {med('write_mib'):.0f} MiB in "
                  f"{med('writes'):.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
