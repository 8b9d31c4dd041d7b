"""A registry cluster for tests: identical instances behind nginx, shared state.

    PostgreSQL database (metadata)  +  SeaweedFS bucket (blobs, under a prefix)
          ^           ^           ^
      instance 0  instance 1  instance 2     (gunicorn, `python -m ociregistry serve`)
          ^           ^           ^
          +------ nginx round robin ------+  <- cluster.url / cluster.host

Every instance reads the same config file (storage.driver s3, the bucket and a
prefix of this cluster's own, the database URL, a shared ui.secret_key, nginx as
the trusted proxy); ``storage="filesystem"`` shares one directory instead of
the bucket. ``kill(i)`` SIGKILLs an instance (its gunicorn master and workers,
as a crashed machine would lose them); ``restart(i)`` brings it back on its port.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from ociregistry.config import _merge
from tests.cluster.nginx import Nginx
from tests.cluster.pg import PostgresCluster
from tests.cluster.s3 import SeaweedFS
from tests.server import RegistryProcess, children_of

SIZE = 3


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie waiting for init has no sockets left


@contextmanager
def _without_aws_settings() -> Iterator[None]:
    """No AWS_* credential, profile or endpoint variable reaches a started instance:
    its settings carry explicit keys, and nothing else may steer its client."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_") and k != "AWS_CA_BUNDLE"}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


class Cluster:
    """``size`` registry instances with the same settings, behind nginx."""

    def __init__(
        self,
        base: Path,
        database_url: str,
        s3: SeaweedFS | None = None,
        bucket: str | None = None,
        size: int = SIZE,
        workers: int = 2,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.database_url = database_url
        self.s3 = s3
        self.bucket = bucket
        self.prefix = f"registry-{uuid.uuid4().hex[:8]}/"
        if s3 is not None and bucket is not None:
            storage: dict[str, Any] = {"driver": "s3", "s3": {
                "bucket": bucket, "prefix": self.prefix, "region": s3.region,
                "endpoint_url": s3.endpoint_url,
                "access_key": s3.access_key, "secret_key": s3.secret_key,
            }}
        else:
            storage = {"driver": "filesystem", "root": str(base / "shared-storage")}
        self.settings = _merge({
            "database": {"url": database_url},
            "storage": storage,
            "http": {"trusted_proxies": ["127.0.0.1"]},
            "ui": {"secret_key": uuid.uuid4().hex},
        }, settings or {})
        self.config = base / "config.yml"
        self.config.write_text(yaml.safe_dump(self.settings))
        self.config.chmod(0o600)
        # The URL also in the environment: RegistryProcess would otherwise give each
        # instance a database of its own under REGISTRY_TEST_DATABASE_URL.
        self.env = {**(env or {}), "OCIREGISTRY_DATABASE__URL": database_url}
        self.instances = []
        for i in range(size):
            (base / f"node{i}").mkdir(exist_ok=True)
            self.instances.append(RegistryProcess(
                base / f"node{i}" / "data", workers=workers, env=self.env, config=self.config))
        self.nginx = Nginx([inst.host for inst in self.instances])

    @property
    def driver(self) -> str:
        return self.settings["storage"]["driver"]

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def host(self) -> str:
        return self.nginx.host

    def start(self) -> Cluster:
        try:
            # One at a time: the first applies the migrations, the others find them done.
            for inst in self.instances:
                with _without_aws_settings():
                    inst.start()
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        return self

    def running(self, i: int) -> bool:
        proc = self.instances[i].proc
        return proc is not None and proc.poll() is None

    def kill(self, i: int) -> None:
        """SIGKILL instance ``i``: its master and every worker, nothing finishes."""
        inst = self.instances[i]
        assert inst.proc is not None and inst.proc.poll() is None, f"instance {i} not running"
        workers = children_of(inst.proc.pid)
        inst.proc.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        inst.proc.wait()
        inst._log.close()
        deadline = time.monotonic() + 30
        while not all(_gone(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers of instance {i} survived SIGKILL"
            time.sleep(0.05)

    def restart(self, i: int) -> None:
        """Start instance ``i`` again (after kill or stop), on the same port."""
        assert not self.running(i), f"instance {i} is running"
        with _without_aws_settings():
            self.instances[i].start()

    def logs(self) -> str:
        """Every instance's log, for failure messages."""
        out = []
        for inst in self.instances:
            if inst.log_path.exists():
                out.append(f"--- {inst.host}\n{inst.log_path.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        try:
            self.nginx.stop()
        finally:
            for i, inst in enumerate(self.instances):
                if self.running(i):
                    inst.stop()


@contextmanager
def standalone_cluster(base: Path, **options: Any) -> Iterator[Cluster]:
    """A cluster with its own PostgreSQL and SeaweedFS (no fixtures needed)."""
    with ExitStack() as stack:
        pg = PostgresCluster().start()
        stack.callback(pg.stop)
        s3 = SeaweedFS().start()
        stack.callback(s3.stop)
        bucket = s3.create_bucket()
        cluster = Cluster(base, pg.create_database(), s3, bucket, **options).start()
        stack.callback(cluster.stop)
        yield cluster


@pytest.fixture(scope="session")
def cluster(
    postgres: PostgresCluster, seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three instances on S3 + PostgreSQL behind nginx, shared by the session."""
    bucket = seaweedfs.create_bucket()
    server = Cluster(tmp_path_factory.mktemp("cluster"), postgres.create_database(),
                     seaweedfs, bucket).start()
    yield server
    server.stop()
    seaweedfs.delete_bucket(bucket)


@pytest.fixture
def make_cluster(
    postgres: PostgresCluster, seaweedfs: SeaweedFS, tmp_path: Path
) -> Iterator[Any]:
    """A factory of fresh clusters (own database and bucket), stopped after the test.

    ``make_cluster(settings={"gc": {"grace_period_seconds": 0}}, storage="s3")``
    """
    made: list[tuple[Cluster, str | None]] = []

    def make(storage: str = "s3", **options: Any) -> Cluster:
        bucket = seaweedfs.create_bucket() if storage == "s3" else None
        try:
            cluster = Cluster(tmp_path / f"cluster{len(made)}", postgres.create_database(),
                              seaweedfs if bucket else None, bucket, **options)
        except BaseException:
            if bucket:
                seaweedfs.delete_bucket(bucket)
            raise
        made.append((cluster, bucket))
        return cluster.start()  # a failed start stops what it started; teardown does the rest

    yield make
    for cluster, bucket in made:
        try:
            cluster.stop()
        finally:
            if bucket:
                seaweedfs.delete_bucket(bucket)
