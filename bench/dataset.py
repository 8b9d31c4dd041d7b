"""The scale bench's data set: a registry filled directly, fast and reproducibly.

    .venv/bin/python -m bench.dataset --scale 1|10|100 --db sqlite|postgres --out DIR
        [--seed N] [--no-distribution]

At 1x: 1,000 repositories, 10,000 tags, about 10,000 manifests and 20,000 blob
links (every manifest links a config and a layer); 10x and 100x multiply all of
them. One repository, ``big/monorepo``, holds 5 % of the tags (500 at 1x, 50,000
at 100x; its tags share up to 1,000 manifests) so a tags list has a last page
far away. 1 % of the manifests are untagged garbage, older than any grace
period, each with a config and a layer of its own that nothing else references: what a GC
with ``--delete-untagged`` must find and delete.

Blobs are small and shared: 2,000 (config, layer) pairs, the layer a real tar
and the config naming its diff_id, so clients pull them; repositories pick their
pairs from that pool. The disk stays small; the rows do not.

Writes, under DIR:
- ``ours-sqlite/`` (``registry.db`` and ``blobs/``) or ``ours-postgres/`` (``blobs/``
  and ``pg/``, a private PostgreSQL cluster, stopped, whose URL is in
  ``database-url``): a data directory `python app.py --data-dir` serves. Migrations
  run first, then bulk inserts through SQLAlchemy Core (COPY on PostgreSQL).
- ``distribution/``: the same content in Distribution's filesystem layout
  (docker/registry/v2/...: tags' current links, revisions, _layers links, blob
  data); the tags' index links are left out (pulls and garbage-collect read only
  current links), which saves two in five inodes.
- ``plan.json``: the counts, the seed, the sample images (repository, tag, digest)
  clients pull and the timings of each step.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ociregistry.metadata import schema as t
from ociregistry.metadata.catalog_queries import recompute_repository_sizes
from ociregistry.metadata.store import MetadataStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
BIG = "big/monorepo"
PAIRS = 2000  # distinct (config, layer) pairs: 4,000 shared blobs
BIG_MANIFESTS = 1000
GARBAGE_EVERY = 100  # 1 % of the manifests are untagged garbage
BATCH = 20_000
AGE = 2 * 86400  # every row is this old: past any GC grace period


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(name: str, content: bytes) -> bytes:
    """A deterministic one-file tar (mtime 0, no owner names)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


@dataclass
class Image:
    config: bytes
    layer: bytes
    manifest: bytes
    config_digest: str = ""
    layer_digest: str = ""
    digest: str = ""

    def __post_init__(self) -> None:
        self.config_digest, self.layer_digest = _sha(self.config), _sha(self.layer)
        self.digest = _sha(self.manifest)


def make_image(name: str, seed: int) -> Image:
    layer = _tar(f"bench/{name}", f"{name} {seed}\n".encode())
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Env": [f"BENCH={name}"]},
        "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]},
    }, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": _sha(layer), "size": len(layer)}],
    }, separators=(",", ":")).encode()
    return Image(config, layer, manifest)


@dataclass
class Repo:
    id: int
    name: str
    images: list[Image]  # its manifests, in order
    tags: list[tuple[str, int]]  # (tag, index into images)
    garbage: list[Image] = field(default_factory=list)  # untagged, own layer


@dataclass
class Plan:
    scale: int
    seed: int
    pool: list[Image]
    repos: int
    tags: int
    big_tags: int

    @classmethod
    def make(cls, scale: int, seed: int) -> Plan:
        pool = [make_image(f"pair{i}", seed) for i in range(PAIRS)]
        return cls(scale, seed, pool, 1000 * scale, 10_000 * scale, 500 * scale)

    def iter_repos(self) -> Iterator[Repo]:
        """Every repository, deterministically from the seed."""
        rng = random.Random(self.seed)
        small_repos = self.repos - 1
        per_repo, extra = divmod(self.tags - self.big_tags, small_repos)
        serial = 0  # manifests so far, for the 1 % garbage
        for rid in range(1, self.repos + 1):
            if rid == self.repos:
                name, count = BIG, min(BIG_MANIFESTS, self.big_tags)
                tag_count = self.big_tags
            else:
                name = f"ns{rid % 100:02d}/app{rid:06d}"
                count = tag_count = per_repo + (1 if rid <= extra else 0)
            offset = rng.randrange(PAIRS)
            images = [self.pool[(offset + j) % PAIRS] for j in range(count)]
            tags = [(f"t{j:07d}", j % count) for j in range(tag_count)]
            garbage = []
            for _ in range(count):
                serial += 1
                if serial % GARBAGE_EVERY == 0:
                    garbage.append(make_image(f"garbage{serial}", self.seed))
            yield Repo(rid, name, images, tags, garbage)


def _batched(rows: Iterator[dict], size: int = BATCH) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Loader:
    """Bulk rows into the project's tables: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.postgres = store.dialect == "postgresql"

    def prepare(self, conn: sa.Connection) -> None:
        """Settings of the load's one transaction. PostgreSQL: no triggers (the foreign
        keys' and the GC candidates': the rows are consistent by construction and
        ``seed_gc_candidates`` records the garbage after), so COPY only writes rows and
        indexes. SQLite: a page cache that holds the whole file, so the indexes on
        digests (random keys) are updated in memory, not by re-reading the disk."""
        if self.postgres:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            conn.exec_driver_sql("PRAGMA cache_size = -3000000")  # KiB: 3 GiB at most

    def put(self, conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
        if not rows:
            return
        if not self.postgres:
            conn.execute(table.insert(), rows)
            return
        columns = list(rows[0])
        cursor = conn.connection.driver_connection.cursor()  # psycopg 3
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])


def fill_database(store: MetadataStore, plan: Plan) -> dict[str, int]:
    """Every row of the plan; the counts."""
    loader, now = Loader(store), time.time()
    born = now - AGE
    counts = {"repositories": 0, "manifests": 0, "tags": 0, "repository_blobs": 0,
              "blobs": 0, "garbage_manifests": 0}
    blob_rows = {d: len(data) for d, data in all_blobs(plan)}  # first: the links need them
    manifest_id, live = 0, set()  # live: the blobs tagged images reference
    with store.write() as conn:
        loader.prepare(conn)

        def flush(buffers: dict[sa.Table, list[dict]]) -> None:
            for table in (t.repositories, t.manifests, t.manifest_blobs, t.tags,
                          t.repository_blobs):
                loader.put(conn, table, buffers[table])
                buffers[table].clear()

        buffers: dict[sa.Table, list[dict]] = {
            table: [] for table in (t.repositories, t.manifests, t.manifest_blobs, t.tags,
                                    t.repository_blobs)}
        for batch in _batched({"digest": d, "size": n, "touched_at": born}
                              for d, n in blob_rows.items()):
            loader.put(conn, t.blobs, batch)
        for repo in plan.iter_repos():
            buffers[t.repositories].append({"id": repo.id, "name": repo.name,
                                            "created_at": born})
            links: set[str] = set()
            ids = []
            live.update(d for i in repo.images for d in (i.config_digest, i.layer_digest))
            for image in [*repo.images, *repo.garbage]:
                manifest_id += 1
                ids.append(manifest_id)
                buffers[t.manifests].append({
                    "id": manifest_id, "repository_id": repo.id, "digest": image.digest,
                    "media_type": OCI_MANIFEST, "size": len(image.manifest),
                    "payload": image.manifest, "subject": None, "artifact_type": None,
                    "annotations": None, "created_at": born})
                for d in (image.config_digest, image.layer_digest):
                    buffers[t.manifest_blobs].append({"manifest_id": manifest_id, "digest": d})
                    links.add(d)
            for tag, index in repo.tags:
                buffers[t.tags].append({"repository_id": repo.id, "name": tag,
                                        "manifest_id": ids[index], "updated_at": born})
            buffers[t.repository_blobs].extend(
                {"repository_id": repo.id, "digest": d, "created_at": born}
                for d in sorted(links))
            counts["repositories"] += 1
            counts["manifests"] += len(ids)
            counts["garbage_manifests"] += len(repo.garbage)
            counts["tags"] += len(repo.tags)
            counts["repository_blobs"] += len(links)
            if len(buffers[t.manifest_blobs]) >= BATCH:
                flush(buffers)
        flush(buffers)
        if loader.postgres:  # rows COPYed with explicit ids: move the sequences past them
            for table in (t.repositories, t.manifests):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
                    f" (SELECT max(id) FROM {table.name}))")
    counts["blobs"] = len(blob_rows)
    counts["garbage_blobs"] = len(blob_rows) - len(live)  # what a GC deletes
    return counts


def seed_gc_candidates(store: MetadataStore) -> None:
    """The triggers recorded every row inserted; keep what a registry whose last GC
    saw all but the garbage holds (the seed of migration 0017): the garbage."""
    if not hasattr(t, "gc_manifest_candidates"):  # a tree before migration 0017
        return
    m, tg, b, mb = t.manifests, t.tags, t.blobs, t.manifest_blobs
    with store.write() as conn:
        conn.execute(t.gc_manifest_candidates.delete())
        conn.execute(t.gc_blob_candidates.delete())
        conn.execute(t.gc_manifest_candidates.insert().from_select(
            ["manifest_id"],
            sa.select(m.c.id).where(~sa.exists().where(tg.c.manifest_id == m.c.id))))
        conn.execute(t.gc_blob_candidates.insert().from_select(
            ["digest"],
            sa.select(b.c.digest).where(~sa.exists().where(mb.c.digest == b.c.digest))))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def all_blobs(plan: Plan) -> Iterator[tuple[str, bytes]]:
    for image in plan.pool:
        yield image.config_digest, image.config
        yield image.layer_digest, image.layer
    for repo in plan.iter_repos():
        for image in repo.garbage:
            yield image.config_digest, image.config
            yield image.layer_digest, image.layer


def write_our_blobs(root: Path, plan: Plan) -> int:
    """blobs/sha256/<xx>/<hex>, the filesystem driver's layout; the number of files."""
    n = 0
    for digest, data in all_blobs(plan):
        hexa = digest.split(":", 1)[1]
        _write(root / "blobs" / "sha256" / hexa[:2] / hexa, data)
        n += 1
    (root / "uploads").mkdir(parents=True, exist_ok=True)
    return n


def write_distribution(root: Path, plan: Plan) -> int:
    """Distribution's filesystem layout; the number of files written."""
    v2 = root / "docker" / "registry" / "v2"
    n = 0

    def blob(digest: str, data: bytes) -> None:
        nonlocal n
        hexa = digest.split(":", 1)[1]
        path = v2 / "blobs" / "sha256" / hexa[:2] / hexa / "data"
        if not path.exists():
            _write(path, data)
            n += 1

    def link(path: Path, digest: str) -> None:
        nonlocal n
        _write(path, digest.encode())
        n += 1

    for image in plan.pool:
        blob(image.config_digest, image.config)
        blob(image.layer_digest, image.layer)
        blob(image.digest, image.manifest)
    for repo in plan.iter_repos():
        base = v2 / "repositories" / repo.name
        linked: set[str] = set()
        for image in repo.garbage:
            blob(image.config_digest, image.config)
            blob(image.layer_digest, image.layer)
            blob(image.digest, image.manifest)
        for image in [*repo.images, *repo.garbage]:
            link(base / "_manifests" / "revisions" / "sha256" / image.digest[7:] / "link",
                 image.digest)
            linked.update((image.config_digest, image.layer_digest))
        for d in sorted(linked):
            link(base / "_layers" / "sha256" / d[7:] / "link", d)
        for tag, index in repo.tags:
            link(base / "_manifests" / "tags" / tag / "current" / "link",
                 repo.images[index].digest)
    return n


def repository_names(plan: Plan) -> list[str]:
    return [repo.name for repo in plan.iter_repos()]


def samples(plan: Plan, count: int = 20) -> list[dict[str, str]]:
    """Images spread over the data set (first, last, the big repository) for clients."""
    repos = list(plan.iter_repos())
    step = max(1, len(repos) // count)
    picked = repos[::step][:count - 2] + [repos[-2], repos[-1]]
    out = []
    for repo in picked:
        tag, index = repo.tags[-1]
        out.append({"repository": repo.name, "tag": tag, "digest": repo.images[index].digest,
                    "blob": repo.images[index].layer_digest})
    return out


def postgres_cluster(folder: Path):  # noqa: ANN201 - a tests/cluster/pg.py PostgresCluster
    """A PostgreSQL cluster kept in ``folder`` (made on first use); started."""
    import pwd
    import shutil

    from tests.cluster import pg

    cluster = pg.PostgresCluster()
    shutil.rmtree(cluster.base, ignore_errors=True)
    cluster.base, cluster.data, cluster.log = folder, folder / "data", folder / "postgres.log"
    fresh = not cluster.data.exists()
    folder.mkdir(parents=True, exist_ok=True)
    if cluster.as_postgres:
        user = pwd.getpwnam("postgres")
        for path in (folder.parent, folder):
            os.chown(path, user.pw_uid, user.pw_gid) if path == folder else os.chmod(path, 0o755)
    os.chmod(folder, 0o700)
    if fresh:
        cluster.start()
    else:
        cluster._options = " ".join([
            "-c listen_addresses=127.0.0.1", f"-c port={cluster.port}",
            f"-c unix_socket_directories={folder}", "-c max_connections=300",
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"])
        cluster.start_server()
    return cluster


def analyze(store: MetadataStore) -> None:
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    else:
        with store.write() as conn:
            conn.exec_driver_sql("ANALYZE")


def fill_ours(url: str, ours: Path, plan: Plan, timings: dict[str, float],
              began: float) -> dict[str, int]:
    """Migrations, rows, statistics and blob files of ours; the counts."""
    store = MetadataStore(url, durable=False)  # one transaction: no fsync of the WAL per step
    try:
        store.create_schema()
        timings["migrations_s"] = time.monotonic() - began
        step = time.monotonic()
        counts = fill_database(store, plan)
        timings["rows_s"] = time.monotonic() - step
        step = time.monotonic()
        analyze(store)  # first: without statistics PostgreSQL plans the next two badly
        recompute_repository_sizes(store)
        seed_gc_candidates(store)
        analyze(store)
        timings["stats_s"] = time.monotonic() - step
    finally:
        store.dispose()
    step = time.monotonic()
    counts["blob_files"] = write_our_blobs(ours, plan)
    timings["our_blobs_s"] = time.monotonic() - step
    return counts


def generate(scale: int, db: str, out: Path, seed: int, distribution: bool) -> dict:
    plan = Plan.make(scale, seed)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    began = time.monotonic()
    ours = out / f"ours-{db}"
    cluster = None
    counts: dict[str, int] = {}
    if db == "none":  # Distribution's copy only (made apart: at 100x it is the slow one)
        pass
    elif db == "sqlite":
        ours.mkdir(parents=True, exist_ok=True)
        url = "sqlite:///" + str(ours / "registry.db")
    else:
        cluster = postgres_cluster(ours / "pg")
        url = cluster.create_database("registry")
        (ours / "database-url").write_text(url.rsplit("/", 1)[0] + "/registry\n")
    if db != "none":
        counts = fill_ours(url, ours, plan, timings, began)
        if cluster is not None:
            cluster.stop_server()
    if distribution:
        step = time.monotonic()
        counts["distribution_files"] = write_distribution(out / "distribution", plan)
        timings["distribution_s"] = time.monotonic() - step
    timings["total_s"] = time.monotonic() - began
    result = {"scale": scale, "seed": seed, "db": db, "counts": counts,
              "timings": {k: round(v, 2) for k, v in timings.items()},
              "samples": samples(plan)}
    (out / f"plan-{db}.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, choices=(1, 10, 100), required=True)
    parser.add_argument("--db", choices=("sqlite", "postgres", "none"), default="sqlite",
                        help="none: Distribution's copy only")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--no-distribution", dest="distribution", action="store_false",
                        help="skip Distribution's copy (at 100x: about 9 million inodes)")
    args = parser.parse_args()
    result = generate(args.scale, args.db, args.out, args.seed, args.distribution)
    print(json.dumps({k: result[k] for k in ("scale", "db", "counts", "timings")}, indent=1))


if __name__ == "__main__":
    main()
