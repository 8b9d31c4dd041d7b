"""SQL statements, transactions and fsyncs of the small write requests, counted.

    .venv/bin/python bench/write_sql.py [--show]

Builds the registry's app in process on a fresh data directory (the defaults:
SQLite, filesystem), pushes a base image, then logs, per request kind, every
statement SQLite runs (its own trace, ``set_trace_callback``: those sent on a
driver cursor count too), every BEGIN and COMMIT and every os.fsync (and those
made while a write transaction holds the database's lock): a blob POST and
monolithic PUT, a cross-repository mount, a manifest PUT to a new repository, a
manifest PUT of a stored manifest under a new tag (what the harness's 1,000-tag
set-up sends). "built": statements SQLAlchemy built and compiled for the request
rather than run precompiled (metadata/prepared.py). No timing: the counts are
what the write path costs in round trips, steady on any machine. ``--show``
prints the statements; ``--fsync false`` runs with storage.fsync off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sqlalchemy import event  # noqa: E402

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Tally:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.fsyncs = 0
        self.locked_fsyncs = 0  # inside a write transaction: every writer waits for them
        self.built = 0  # statements SQLAlchemy built and compiled (not prepared.py's)
        self.in_write = False

    def reset(self) -> None:
        self.statements, self.fsyncs, self.locked_fsyncs, self.built = [], 0, 0, 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--show", action="store_true", help="print every statement")
    p.add_argument("--fsync", default="true", help="storage.fsync setting (true/false)")
    args = p.parse_args(argv)
    from ociregistry.config import load_settings
    from ociregistry.runtime import build_runtime
    from ociregistry.web.app import create_app

    tmp = tempfile.mkdtemp(prefix="write-sql-")
    settings = load_settings(None, {"data_dir": tmp, "storage": {"fsync": args.fsync == "true"}})
    runtime = build_runtime(settings, migrate=True)
    app = create_app(runtime=runtime)  # no background schedulers: only the requests' SQL
    store = runtime.metadata
    tally = Tally()

    def _sql(statement: str) -> None:
        # Every statement SQLite runs, whichever way it was sent (SQLAlchemy's
        # Connection or a driver cursor: metadata/prepared.py's rows()).
        text = " ".join(statement.split())[:160]
        if text.startswith("BEGIN"):
            tally.in_write = True
        elif text in ("COMMIT", "ROLLBACK"):
            tally.in_write = False
        if tally.statements and tally.statements[-1] == text:
            return  # a trigger's program: SQLite reports the statement again
        tally.statements.append(text)

    @event.listens_for(store.engine, "connect")
    def _trace(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.set_trace_callback(_sql)

    store.engine.dispose()  # pooled connections made before the listener: new ones

    @event.listens_for(store.engine, "before_execute")
    def _built(conn, clauseelement, multiparams, params, execution_options):  # type: ignore[no-untyped-def]
        if not isinstance(clauseelement, str):
            tally.built += 1

    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        tally.fsyncs += 1
        tally.locked_fsyncs += tally.in_write
        real_fsync(fd)

    os.fsync = counting_fsync
    client = app.test_client()

    def push_blob(repo: str, data: bytes) -> None:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.data
        tally_step("blob POST")
        r = client.put(r.headers["Location"] + ("&" if "?" in r.headers["Location"] else "?")
                       + f"digest={_digest(data)}", data=data,
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.data
        tally_step("blob PUT (monolithic)")

    results: dict[str, Counter] = {}

    def tally_step(name: str) -> None:
        c = results.setdefault(name, Counter())
        c["statements"] += sum(1 for s in tally.statements if s not in ("COMMIT", "ROLLBACK")
                               and not s.startswith("BEGIN"))
        c["transactions"] += sum(1 for s in tally.statements if s.startswith("BEGIN"))
        c["commits"] += tally.statements.count("COMMIT")
        c["fsyncs"] += tally.fsyncs
        c["locked"] += tally.locked_fsyncs
        c["built"] += tally.built
        c["n"] += 1
        if args.show and c["n"] == 2:  # the second of a kind: nothing made for the first time
            print(f"-- {name}")
            for s in tally.statements:
                print("  ", s)
        tally.reset()

    layer, config = os.urandom(4096), b'{"architecture":"amd64","os":"linux","rootfs":{}}'
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": _digest(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer), "digest": _digest(layer)}],
    }).encode()
    def push_streamed(repo: str, data: bytes) -> None:
        """docker push's way: POST, one PATCH with the bytes, PUT without."""
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.data
        tally.reset()
        r = client.patch(r.headers["Location"], data=data,
                         headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.data
        tally_step("blob PATCH")
        location = r.headers["Location"]
        r = client.put(location + ("&" if "?" in location else "?") + f"digest={_digest(data)}")
        assert r.status_code == 201, r.data
        tally_step("blob PUT (after PATCH)")

    for i in range(3):
        push_blob(f"base/b{i}", os.urandom(2048))
        push_streamed(f"base/s{i}", os.urandom(2048))
    push_blob("base/app", layer)
    push_blob("base/app", config)
    tally.reset()
    for i in range(3):
        repo = f"made/r{i}"
        for blob in (layer, config):
            r = client.post(f"/v2/{repo}/blobs/uploads/?mount={_digest(blob)}&from=base/app")
            assert r.status_code == 201, r.data
            tally_step("mount")
        r = client.put(f"/v2/{repo}/manifests/latest", data=manifest,
                       headers={"Content-Type": DOCKER_MANIFEST})
        assert r.status_code == 201, r.data
        tally_step("manifest PUT (new repository, new tag)")
    for i in range(3):  # the harness's set-up: one stored manifest, 1,000 tags
        r = client.put(f"/v2/base/app/manifests/t{i}", data=manifest,
                       headers={"Content-Type": DOCKER_MANIFEST})
        assert r.status_code == 201, r.data
        tally_step("manifest PUT (stored manifest, new tag)")
    print(f"{'request':40} {'statements':>10} {'built':>6} {'transactions':>12} {'fsyncs':>7}"
          f" {'under lock':>10}")
    for name, c in results.items():
        n = c["n"]
        print(f"{name:40} {c['statements'] / n:10.1f} {c['built'] / n:6.1f} "
              f"{c['transactions'] / n:12.1f} {c['fsyncs'] / n:7.1f} {c['locked'] / n:10.1f}")
    os.fsync = real_fsync
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
