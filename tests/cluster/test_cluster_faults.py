"""The cluster under load survives its faults: PostgreSQL restarts, the object store
stops for 30 s, the instances are restarted one by one (SIGTERM, as Kubernetes does).

Three instances behind nginx on a PostgreSQL and a SeaweedFS of this module's own
(they are stopped and started here, which other tests must not see), with blobs
streamed by the registry (``redirect: false``: a pull's bytes go through it).
tests/cluster/load.py pushes and pulls all along with skopeo and plain HTTP. What
every test checks:

- no client is ever given an unclean answer: nginx's access log holds no 5xx but
  503 with Retry-After, no HTTP request hung, no skopeo command failed without
  saying the registry was unavailable;
- after the fault, the instances are ready again by themselves (nobody restarts
  them) and every operation started after that succeeds;
- every push that was acknowledged pulls back byte for byte at the end.

The load held and what failed are printed (``pytest -s``) and written to
``fault-report.txt`` in the test's directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.cluster.load import Committed, Load, nginx_statuses, unclean_answers, verify_committed
from tests.cluster.nginx import DeployNginx
from tests.cluster.pg import PostgresCluster
from tests.cluster.s3 import SeaweedFS
from tests.cluster.topology import Cluster
from tests.server import RegistryProcess, serving_workers

READY_TIMEOUT = 180  # seconds for every instance to say ready again (a loaded machine)
S3_DOWN = 30  # seconds the object store stays stopped
SETTINGS = {
    "storage": {"s3": {"redirect": False}},
    "http": {"readiness_cache_seconds": 1},
}


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresCluster]:
    pg = PostgresCluster().start()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def own_seaweedfs() -> Iterator[SeaweedFS]:
    s3 = SeaweedFS().start()
    yield s3
    s3.stop()


@pytest.fixture
def fault_cluster(own_postgres: PostgresCluster, own_seaweedfs: SeaweedFS,
                  tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The cluster; parametrized "deploy": behind the shipped deploy/nginx/registry.conf."""
    bucket = own_seaweedfs.create_bucket()
    cluster = Cluster(tmp_path / "cluster", own_postgres.create_database(), own_seaweedfs,
                      bucket, settings=SETTINGS)
    if getattr(request, "param", "test") == "deploy":
        unused, cluster.nginx = cluster.nginx, DeployNginx([i.host for i in cluster.instances])
        unused.stop()  # never started: removes its directory
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        # A test that failed with a server down leaves it up for the next one.
        if own_seaweedfs.proc is not None and own_seaweedfs.proc.poll() is not None:
            own_seaweedfs.resume()
        if not (own_postgres.data / "postmaster.pid").exists():
            own_postgres.start_server()
        own_seaweedfs.delete_bucket(bucket)


def readiness(cluster: Cluster) -> list[tuple[int, str]]:
    """Each instance's /readyz status and reason (0: no answer)."""
    out = []
    for inst in cluster.instances:
        try:
            r = requests.get(f"{inst.url}/readyz", timeout=30)
            out.append((r.status_code, r.json().get("reason", "")))
        except (requests.RequestException, ValueError) as exc:
            out.append((0, repr(exc)))
    return out


def wait_readiness(cluster: Cluster, ready: bool, reason: str = "") -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        seen = readiness(cluster)
        if all((status == 200) == ready and (ready or reason in why) for status, why in seen):
            return
        assert time.monotonic() < deadline, f"readiness stayed {seen}\n{cluster.logs()}"
        time.sleep(0.5)


def assert_unavailable(cluster: Cluster, dependency: str, blob: Committed | None = None) -> None:
    """What a client is told while ``dependency`` is down, on /v2 and on /api/v1."""
    if blob is None:  # the database: nearly every request needs it
        r = requests.get(f"{cluster.url}/v2/_catalog", timeout=60)
    else:  # the store: a blob's bytes (the manifest comes from the database)
        digest = next(d for d in blob.blobs if d != blob.digest)
        r = requests.get(f"{cluster.url}/v2/{blob.repo}/blobs/{digest}", timeout=60)
    assert r.status_code == 503, r.text
    assert r.json()["errors"][0] == {
        "code": "UNAVAILABLE", "detail": {"dependency": dependency},
        "message": f"the registry's {dependency} is unavailable, try again shortly"}
    assert r.headers["Retry-After"].isdigit()
    if blob is None:
        r = requests.get(f"{cluster.url}/api/v1/repositories", timeout=60)
        assert r.status_code == 503, r.text
        assert r.headers["Content-Type"] == "application/problem+json"
        assert r.json()["code"] == "unavailable" and r.headers["Retry-After"].isdigit()


def counted_unavailable(cluster: Cluster, dependency: str) -> float:
    """registry_dependency_unavailable_total{dependency} summed over the instances."""
    total = 0.0
    pattern = re.compile(
        rf'^registry_dependency_unavailable_total\{{dependency="{dependency}"\}} (\S+)$', re.M)
    for inst in cluster.instances:
        text = requests.get(f"{inst.url}/metrics", timeout=60).text
        total += sum(float(v) for v in pattern.findall(text))
    return total


def finish(load: Load, cluster: Cluster, tmp_path: Path, title: str,
           recovered_at: float, allowed: tuple[int, ...] = ()) -> None:
    """Stop the load; the checks every fault test shares; the report. ``allowed``:
    statuses nginx may log besides 2xx-4xx and 503 (what a retried operation saw)."""
    load.stop()
    shutil.copy(cluster.nginx.access_log, tmp_path / "nginx-access.log")
    if isinstance(cluster.nginx, DeployNginx):  # its own log format: the clients' view only
        report = f"{title} (shipped nginx config)\n{load.report()}"
        print("\n" + report)
        (tmp_path / "fault-report.txt").write_text(report + "\n")
        assert not load.failures(), report
        assert not verify_committed(cluster.url, load.committed)
        return
    entries = nginx_statuses(cluster.nginx.access_log)
    retried = [e for e in entries if "," in e["upstream"]]
    statuses = Counter(e["status"] for e in entries)
    report = (f"{title}\n{load.report()}\n  through nginx: {len(entries)} requests, "
              f"statuses {dict(sorted(statuses.items()))}, {len(retried)} passed on to "
              f"another instance by nginx")
    print("\n" + report)
    (tmp_path / "fault-report.txt").write_text(report + "\n")
    unclean = load.failures(clean=False)
    assert not unclean, f"clients got unclean failures:\n{report}"
    bad = unclean_answers(cluster.nginx.access_log, allowed)
    assert not bad, "answers other than 2xx-4xx or 503 + Retry-After:\n" + "\n".join(bad[:20])
    late = [op for op in load.failures() if op.started >= recovered_at]
    assert not late, f"operations failed after recovery:\n{report}"
    lost = verify_committed(cluster.url, load.committed)
    assert not lost, f"{len(lost)} acknowledged pushes do not pull back:\n" + "\n".join(lost)
    assert len(load.committed) >= 4, report


def test_postgresql_restart_under_load(fault_cluster: Cluster, own_postgres: PostgresCluster,
                                       tmp_path: Path) -> None:
    load = Load(fault_cluster.host, tmp_path / "load").start()
    try:
        load.wait_committed(4)
        load.wait_ops(8)
        down_at = time.monotonic()
        own_postgres.stop_server("fast")  # every session cut mid-transaction
        wait_readiness(fault_cluster, ready=False, reason="database")
        assert_unavailable(fault_cluster, "database")
        time.sleep(5)  # requests keep coming while the database is away
        own_postgres.start_server()
        wait_readiness(fault_cluster, ready=True)  # reconnected, nobody restarted them
        recovered_at = time.monotonic()
        load.wait_ops(8, since=recovered_at)
        down_for = recovered_at - down_at
    finally:
        load.stop()
    finish(load, fault_cluster, tmp_path,
           f"PostgreSQL stopped (fast) and started; not ready for {down_for:.0f} s",
           recovered_at)
    assert counted_unavailable(fault_cluster, "database") > 0


def test_object_store_down_for_30_seconds_under_load(
    fault_cluster: Cluster, own_seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    load = Load(fault_cluster.host, tmp_path / "load").start()
    try:
        load.wait_committed(4)
        load.wait_ops(8)
        down_at = time.monotonic()
        own_seaweedfs.halt()
        wait_readiness(fault_cluster, ready=False, reason="storage")
        assert_unavailable(fault_cluster, "storage", blob=load.committed[0])
        while time.monotonic() < down_at + S3_DOWN:
            time.sleep(0.5)
        failed_while_down = len(load.failures())
        own_seaweedfs.resume()
        wait_readiness(fault_cluster, ready=True)  # without restarting the registry
        recovered_at = time.monotonic()
        load.wait_ops(8, since=recovered_at)
    finally:
        load.stop()
    # The outage was felt (else this test proves nothing), and cleanly.
    assert failed_while_down > 0, load.report()
    finish(load, fault_cluster, tmp_path,
           f"SeaweedFS stopped for {S3_DOWN} s, then started again", recovered_at)
    assert counted_unavailable(fault_cluster, "storage") > 0


@pytest.mark.parametrize("fault_cluster", ["test", "deploy"], indirect=True)
def test_rolling_restart_under_load_fails_nothing(fault_cluster: Cluster,
                                                  tmp_path: Path) -> None:
    # A request nginx sends into a kept-alive connection at the moment the draining
    # worker closes it is answered 502 and not passed on when it carried a body
    # (nginx can't resend a streamed PATCH): the client retries, as the issue allows
    # ("the client's retry succeeds on another instance"); only a failed retry counts.
    load = Load(fault_cluster.host, tmp_path / "load", op_retries=1).start()
    try:
        load.wait_committed(4)
        load.wait_ops(8)
        for i in range(len(fault_cluster.instances)):
            code = fault_cluster.instances[i].stop()  # SIGTERM, and wait for the exit
            assert code == 0, f"instance {i} exited with {code}:\n{fault_cluster.logs()}"
            fault_cluster.restart(i)
            load.wait_ops(4, since=time.monotonic())
    finally:
        load.stop()
    finish(load, fault_cluster, tmp_path, "rolling restart: SIGTERM, start, one at a time",
           load.started, allowed=(502,))
    assert not load.failures(), load.report()


def test_readyz_is_not_ready_on_a_read_only_database(fault_cluster: Cluster,
                                                     own_postgres: PostgresCluster) -> None:
    # A failover that leaves the instances on a standby: SELECT 1 works, a push cannot.
    name = sa.engine.make_url(fault_cluster.database_url).database
    admin = sa.create_engine(own_postgres.url(), isolation_level="AUTOCOMMIT",
                             poolclass=sa.NullPool)

    def cut_sessions(read_only: bool) -> None:
        with admin.connect() as conn:
            setting = "on" if read_only else "off"
            conn.exec_driver_sql(
                f'ALTER DATABASE "{name}" SET default_transaction_read_only = {setting}')
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")

    try:
        wait_readiness(fault_cluster, ready=True)
        cut_sessions(read_only=True)
        wait_readiness(fault_cluster, ready=False, reason="read-only")
        r = requests.post(f"{fault_cluster.url}/v2/ro/blobs/uploads/", timeout=60)
        assert r.status_code == 503, r.text
        assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert r.headers["Retry-After"].isdigit()
        assert requests.get(f"{fault_cluster.url}/v2/_catalog", timeout=60).status_code == 200
        cut_sessions(read_only=False)
        wait_readiness(fault_cluster, ready=True)
        r = requests.post(f"{fault_cluster.url}/v2/ro/blobs/uploads/", timeout=60)
        assert r.status_code == 202, r.text
    finally:
        admin.dispose()


def test_readyz_is_not_ready_when_the_store_refuses_sse(
    own_postgres: PostgresCluster, tmp_path: Path
) -> None:
    # `serve` refuses to start on a store that refuses the configured SSE (tested in
    # test_s3_docs_examples); here the store loses its SSE-S3 key while the registry
    # runs: SeaweedFS restarted as it runs by default, answering 500 to every write
    # that asks for AES256.
    s3 = SeaweedFS(sse_key=True).start()
    try:
        bucket = s3.create_bucket()
        cluster = Cluster(tmp_path / "sse", own_postgres.create_database(), s3, bucket, size=1,
                          settings={"storage": {"s3": {"sse": "AES256"}}}).start()
        try:
            ready = f"{cluster.instances[0].url}/readyz"
            assert requests.get(ready, timeout=60).status_code == 200
            s3.halt()
            s3.with_sse_key = False
            s3.resume()
            deadline = time.monotonic() + 120  # past the readiness cache
            while (r := requests.get(ready, timeout=60)).status_code == 200:
                assert time.monotonic() < deadline, "still ready"
                time.sleep(0.5)
            assert r.status_code == 503, r.text
            reason = r.json()["reason"]
            assert reason.startswith("storage:") and "PutObject" in reason, reason
            assert "'AES256'" in reason, reason  # says which setting to look at
            # A push is told the storage is unavailable: never a 500.
            digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
            r = requests.post(f"{cluster.url}/v2/sse/blobs/uploads/?digest={digest}",
                              data=b"x", timeout=60)
            assert r.status_code == 503, r.text
            assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
        finally:
            cluster.stop()
    finally:
        s3.stop()


def test_readyz_is_ready_with_sse_where_the_store_supports_it(
    own_postgres: PostgresCluster, own_seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    bucket = own_seaweedfs.create_bucket()
    cluster = Cluster(tmp_path / "sse", own_postgres.create_database(), own_seaweedfs, bucket,
                      size=1, settings={"storage": {"s3": {"sse": "AES256"}}}).start()
    try:
        r = requests.get(f"{cluster.instances[0].url}/readyz", timeout=60)
        assert r.status_code == 200, r.text
        # The probe leaves nothing behind: no object, no open multipart upload.
        client = own_seaweedfs.client()
        assert own_seaweedfs.keys(bucket) == []
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    finally:
        cluster.stop()
        own_seaweedfs.delete_bucket(bucket)


def test_a_worker_restarted_while_the_database_is_down_boots(
    own_postgres: PostgresCluster, tmp_path: Path
) -> None:
    # gunicorn stops the whole server when a new worker fails to boot: a worker
    # that dies during a database outage must not take its instance with it.
    # No ui.secret_key in the settings: the key kept in the database is read by
    # the master at start, not by each worker.
    url = own_postgres.create_database()
    server = RegistryProcess(tmp_path / "data", workers=1,
                             env={"OCIREGISTRY_DATABASE__URL": url}).start()
    try:
        assert server.proc is not None
        own_postgres.stop_server("fast")
        try:
            (worker,) = serving_workers(server.proc.pid)
            os.kill(worker, signal.SIGKILL)
            deadline = time.monotonic() + READY_TIMEOUT
            while True:  # a new worker answers (503: the database is still down)
                assert server.proc.poll() is None, server.log_path.read_text()[-3000:]
                try:
                    r = requests.get(f"{server.url}/v2/_catalog", timeout=30)
                    if r.status_code == 503:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
                time.sleep(0.2)
            assert serving_workers(server.proc.pid) != [worker]
        finally:
            own_postgres.start_server()
        deadline = time.monotonic() + READY_TIMEOUT
        while requests.get(f"{server.url}/readyz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
            time.sleep(0.5)
        assert requests.get(f"{server.url}/v2/_catalog", timeout=30).status_code == 200
    finally:
        server.stop()


def test_a_frozen_object_store_fails_requests_by_the_timeouts_not_hangs(
    own_postgres: PostgresCluster, own_seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    # A store that accepts connections and never answers (SIGSTOP: a partition, a
    # stuck gateway) is worse than one that refuses: only the timeouts end the wait.
    bucket = own_seaweedfs.create_bucket()
    cluster = Cluster(tmp_path / "frozen", own_postgres.create_database(), own_seaweedfs,
                      bucket, size=1, settings={
                          "storage": {"s3": {"redirect": False, "read_timeout_seconds": 3,
                                             "connect_timeout_seconds": 2,
                                             "max_attempts": 2}},
                          "http": {"readiness_cache_seconds": 0}}).start()
    url = cluster.instances[0].url
    assert own_seaweedfs.proc is not None
    try:
        data = os.urandom(1000)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{url}/v2/frozen/blobs/uploads/?digest={digest}", data=data,
                          timeout=60)
        assert r.status_code == 201, r.text
        own_seaweedfs.proc.send_signal(signal.SIGSTOP)
        try:
            # Answered well before the client's own 60 s timeout would fire.
            r = requests.get(f"{url}/v2/frozen/blobs/{digest}", timeout=60)
            assert r.status_code == 503, r.text
            assert r.json()["errors"][0]["detail"] == {"dependency": "storage"}
            r = requests.post(f"{url}/v2/frozen/blobs/uploads/?digest={digest}", data=data,
                              timeout=60)
            assert r.status_code == 503, r.text
            r = requests.get(f"{url}/readyz", timeout=60)
            assert r.status_code == 503 and r.json()["reason"].startswith("storage:"), r.text
        finally:
            own_seaweedfs.proc.send_signal(signal.SIGCONT)
        wait_readiness(cluster, ready=True)
        r = requests.get(f"{url}/v2/frozen/blobs/{digest}", timeout=60)
        assert r.status_code == 200 and r.content == data
    finally:
        cluster.stop()
        own_seaweedfs.delete_bucket(bucket)
