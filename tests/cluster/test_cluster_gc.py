"""Garbage collection in a cluster: one instance collects while the others take
pushes, and a GC scheduled (or started) on every instance runs once at a time.

The push/GC race is the one of tests/api/test_gc_concurrency.py (grace period 0,
so every blob not yet referenced is fair game), spread over the cluster: the
pushers talk to two instances directly and to nginx, the collector to the third
instance (POST /v2/gc) and to the shared database and bucket (`ociregistry gc`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import requests
import sqlalchemy as sa

from tests.api import test_gc_concurrency as race
from tests.cluster.s3 import aws_free_environ

NO_GRACE = {"gc": {"grace_period_seconds": 0}}
INTERVAL = 2.0
SCHEDULED_RUNS = 4
TIMEOUT = 300


def cli_gc(cluster, *args: str) -> subprocess.CompletedProcess:
    """`python -m ociregistry gc` with the instances' own settings file."""
    data_dir = cluster.base / "cli-data"
    return subprocess.run(
        [sys.executable, "-m", "ociregistry", "gc", "--config", str(cluster.config),
         "--data-dir", str(data_dir), *args],
        env={**aws_free_environ(), **cluster.env}, cwd=str(cluster.base),
        capture_output=True, text=True, timeout=TIMEOUT,
    )


def gc_runs(cluster) -> list[tuple[float, float | None]]:
    """(started, finished) of every recorded run, in order."""
    engine = sa.create_engine(cluster.database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT started_at, finished_at FROM gc_runs ORDER BY started_at").all()
    finally:
        engine.dispose()
    return [(row[0], row[1]) for row in rows]


def assert_never_overlapping(runs: list[tuple[float, float | None]]) -> None:
    assert all(finished is not None for _, finished in runs), runs
    for (_, finished), (started, _) in zip(runs, runs[1:], strict=False):
        assert started >= finished, f"two GC runs overlapped: {runs}"


def collector(cluster, done: threading.Event, outcome: race.Outcome) -> None:
    """GC over and over on the third instance, every third run from the CLI."""
    session = requests.Session()
    url = cluster.instances[2].url
    try:
        for run in range(race.MAX_GC_RUNS):
            if done.is_set():
                return
            untagged = run % 2 == 1
            if run % 3 == 2:
                proc = cli_gc(cluster, "--json", *(["--delete-untagged"] if untagged else []))
                assert proc.returncode == 0, proc.stderr
                result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                params = {"delete_untagged": "true"} if untagged else {}
                r = session.post(f"{url}/v2/gc", params=params, timeout=TIMEOUT)
                assert r.status_code == 200, r.text
                result = r.json()
            with outcome.lock:
                outcome.gc_runs.append(result)
    except Exception as exc:
        with outcome.lock:
            outcome.errors.append(f"gc: {exc!r}")


def test_gc_on_one_instance_while_the_others_take_pushes(make_cluster):
    cluster = make_cluster(settings=NO_GRACE)
    targets = [cluster.instances[0].url, cluster.instances[1].url, cluster.url]
    outcome = race.run_race(lambda done, out: collector(cluster, done, out), targets)

    assert not outcome.errors, outcome.errors
    r = requests.post(f"{cluster.instances[2].url}/v2/gc", params={"delete_untagged": "true"},
                      timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    outcome.gc_runs.append(r.json())
    # The collector really deleted things while the pushes went on.
    assert sum(run["blobs_deleted"] for run in outcome.gc_runs) > 0
    assert len(outcome.pushed) + outcome.gave_up == race.PUSHERS * race.IMAGES_PER_PUSHER
    assert outcome.pushed, "no push succeeded"
    print(f"\n{len(outcome.pushed)} images pushed, {outcome.lost_races} lost races, "
          f"{len(outcome.gc_runs)} GC runs")
    # Every image whose manifest push succeeded pulls completely, from anywhere.
    for pushed in outcome.pushed:
        race.check_pulls(cluster.url, pushed)
    for pushed in outcome.pushed[::5]:
        for inst in cluster.instances:
            race.check_pulls(inst.url, pushed)
    assert_never_overlapping(gc_runs(cluster))


def test_scheduled_gc_on_every_instance_runs_once_per_interval(make_cluster):
    """Three instances with two workers each all schedule GC: one run at a time,
    and never sooner than the interval after the previous one finished."""
    cluster = make_cluster(settings={"gc": {"interval_seconds": INTERVAL}})
    deadline = time.monotonic() + TIMEOUT
    while len(runs := gc_runs(cluster)) < SCHEDULED_RUNS:
        assert time.monotonic() < deadline, f"only {len(runs)} scheduled runs:\n{cluster.logs()}"
        time.sleep(0.5)
    for i in range(len(cluster.instances)):
        cluster.instances[i].stop()  # no run may start while we read the table
    runs = gc_runs(cluster)
    assert_never_overlapping(runs)
    for (_, finished), (started, _) in zip(runs, runs[1:], strict=False):
        assert finished is not None and started - finished >= INTERVAL, runs
    logged = sum(inst.log_path.read_text().count("scheduled garbage collection:")
                 for inst in cluster.instances)
    assert logged == len(runs)


def gc_everywhere_at_once(cluster) -> list[requests.Response]:
    """POST /v2/gc on every instance at the same moment."""
    answers: list[requests.Response] = []
    barrier = threading.Barrier(len(cluster.instances))

    def start(url: str) -> None:
        barrier.wait()
        answers.append(requests.post(f"{url}/v2/gc", timeout=TIMEOUT))

    threads = [threading.Thread(target=start, args=(inst.url,)) for inst in cluster.instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_gc_started_on_every_instance_at_once_runs_one_at_a_time(cluster):
    before = len(gc_runs(cluster))
    for _round in range(3):
        answers = gc_everywhere_at_once(cluster)
        codes = sorted(r.status_code for r in answers)
        assert set(codes) <= {200, 409} and 200 in codes, [(r.status_code, r.text)
                                                          for r in answers]
        for r in answers:
            if r.status_code == 409:
                assert "already running" in r.text
    runs = gc_runs(cluster)
    assert len(runs) >= before + 3
    assert_never_overlapping(runs)
