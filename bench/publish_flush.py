"""What publishing a blob waits for the disk: the flushes in a row, or together.

    .venv/bin/python bench/publish_flush.py [--dir DIR] [--rounds 4] [--blobs 15] [--kib 256]

A blob's publication (storage/filesystem.py stage()) makes its upload file's bytes
and its new name durable before the index records it. Before: fsync the file, link
it to its name, fsync the directory (two disk round trips in a row). Now: link,
then flush the file and the directory together (storage/durable.py). This times
both on the file system of ``--dir`` (default: a temporary folder there), with 1
and with 8 threads publishing at once (bench/loads.py's push flow has 8 clients),
alternating, ``--rounds`` times; per publication median and mean, in ms. No server:
only the calls stage() makes, so the figure is the disk's, steady on any load but
the disk's own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ociregistry.storage.durable import fsync_dir, fsync_together  # noqa: E402


def publish(root: Path, together: bool, blobs: int, data: bytes, times: list[float]) -> None:
    for _ in range(blobs):
        upload = root / "uploads" / str(uuid.uuid4())
        fd = os.open(upload, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.write(fd, data)
            name = uuid.uuid4().hex
            directory = root / "blobs" / name[:2]
            start = time.perf_counter()
            if together:
                os.link(upload, directory / name)
                fsync_together(fd, [str(directory)])
            else:
                os.fsync(fd)
                os.link(upload, directory / name)
                fsync_dir(str(directory))
            times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
            os.unlink(upload)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default=None, help="where to write (a temporary folder in it)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--blobs", type=int, default=15, help="publications per thread per round")
    p.add_argument("--kib", type=int, default=256, help="bytes per blob, KiB")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="publish-flush-", dir=args.dir))
    try:
        (root / "uploads").mkdir()
        for prefix in range(256):  # every <xx> directory there already: no mkdir timed
            (root / "blobs" / f"{prefix:02x}").mkdir(parents=True)
        data = os.urandom(args.kib << 10)
        results: dict[tuple[int, bool], list[float]] = {}
        for _ in range(args.rounds):
            for threads in (1, 8):
                for together in (False, True):
                    times = results.setdefault((threads, together), [])
                    workers = [threading.Thread(target=publish,
                                                args=(root, together, args.blobs, data, times))
                               for _ in range(threads)]
                    for w in workers:
                        w.start()
                    for w in workers:
                        w.join()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nper publication of a {args.kib} KiB blob, ms ({args.rounds} rounds)\n")
    print("| threads | in a row: median | mean | together: median | mean |\n|--:|--:|--:|--:|--:|")
    for threads in (1, 8):
        row, both = results[(threads, False)], results[(threads, True)]
        print(f"| {threads} | {statistics.median(row) * 1e3:.2f} | {statistics.mean(row) * 1e3:.2f}"
              f" | {statistics.median(both) * 1e3:.2f} | {statistics.mean(both) * 1e3:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
