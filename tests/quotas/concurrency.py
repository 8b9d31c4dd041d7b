"""The quota race: 8 clients push overlapping images into two namespaces with quotas
while garbage collection runs over and over, and a monitor samples the usage.

Shared by tests/quotas (one registry) and tests/cluster (three instances on
PostgreSQL + S3). What must hold: the usage kept never goes over a limit (so the
bytes stored never exceed it by more than what is in flight in requests not yet
recorded), and at the end it equals `ociregistry du --quotas`, counted from scratch.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.quotas import support as s

CLIENTS = 8
IMAGES_PER_CLIENT = 8
LIMIT = 150_000
DEADLINE = 900


@dataclass
class Outcome:
    pushed: int = 0
    refused: int = 0
    lost_to_gc: int = 0
    gc_runs: int = 0
    samples: int = 0
    errors: list[str] = field(default_factory=list)
    over: list[tuple[str, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(i: int, url: str, namespace: str, pool: list[bytes], outcome: Outcome) -> None:
    rng = random.Random(i)
    session = requests.Session()
    repo = f"{namespace}/r{i % 3}"
    mine: list[str] = []
    try:
        for n in range(IMAGES_PER_CLIENT):
            layers = [*rng.sample(pool, rng.randint(1, 3)), os.urandom(rng.randint(2000, 8000))]
            config, manifest = s.image(f"{i}-{n}".encode(), layers)
            mode = ("monolithic", "chunked", "streamed")[n % 3]
            r = s.push_image(session, url, repo, f"c{i}-{n}", config, layers, manifest, mode)
            with outcome.lock:
                if r.status_code == 201:
                    outcome.pushed += 1
                    mine.append(r.headers["Docker-Content-Digest"])
                elif s.denied(r):
                    outcome.refused += 1
                elif r.status_code in (400, 404) and r.json()["errors"][0]["code"] in (
                        "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"):
                    outcome.lost_to_gc += 1  # a layer swept between its upload and the manifest
                else:
                    outcome.errors.append(f"client {i}: {r.status_code} {r.text[:300]}")
            if mine and rng.random() < 0.3:  # make room now and then
                digest = mine.pop(0)
                r = session.delete(f"{url}/v2/{repo}/manifests/{digest}", timeout=s.TIMEOUT)
                if r.status_code not in (202, 404):
                    with outcome.lock:
                        outcome.errors.append(f"client {i} delete: {r.status_code} {r.text}")
    except Exception as exc:  # noqa: BLE001  (reported, not lost in a thread)
        with outcome.lock:
            outcome.errors.append(f"client {i}: {exc!r}")


def _collector(url: str, done: threading.Event, outcome: Outcome) -> None:
    session = requests.Session()
    run = 0
    while not done.is_set():
        params = {"delete_untagged": "true"} if run % 2 else {}
        r = session.post(f"{url}/v2/gc", params=params, timeout=s.TIMEOUT)
        if r.status_code == 200:
            with outcome.lock:
                outcome.gc_runs += 1
        elif r.status_code != 409:  # 409: a run elsewhere holds the lock
            with outcome.lock:
                outcome.errors.append(f"gc: {r.status_code} {r.text[:300]}")
        run += 1
        done.wait(0.3)


def _monitor(url: str, patterns: list[str], done: threading.Event, outcome: Outcome) -> None:
    session = requests.Session()
    while not done.is_set():
        r = session.get(f"{url}/api/v1/quotas", timeout=s.TIMEOUT)
        if r.status_code == 200:
            for quota in r.json()["items"]:
                if quota["namespace"] in patterns:
                    if not 0 <= quota["usage"] <= quota["limit"]:
                        with outcome.lock:
                            outcome.over.append((quota["namespace"], quota["usage"],
                                                 quota["limit"]))
            with outcome.lock:
                outcome.samples += 1
        done.wait(0.02)


def run_race(targets: list[str], gc_url: str, du_target: Any) -> Outcome:
    """``targets[0]`` must take admin operations (the registry host, no proxy)."""
    tag = uuid.uuid4().hex[:6]
    namespaces = [f"qx{tag}", f"qy{tag}"]
    patterns = [f"{ns}/**" for ns in namespaces]
    created = [s.create_quota(targets[0], p, LIMIT, warning=LIMIT // 2) for p in patterns]
    pool = [os.urandom(random.Random(k).randint(4000, 16000)) for k in range(12)]
    outcome = Outcome()
    done = threading.Event()
    helpers = [threading.Thread(target=_collector, args=(gc_url, done, outcome)),
               threading.Thread(target=_monitor, args=(targets[0], patterns, done, outcome))]
    clients = [threading.Thread(target=_client, args=(
        i, targets[i % len(targets)], namespaces[i % 2], pool, outcome)) for i in range(CLIENTS)]
    try:
        for thread in helpers + clients:
            thread.start()
        deadline = time.monotonic() + DEADLINE
        for thread in clients:
            thread.join(max(1.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in clients), "clients did not finish in time"
    finally:
        done.set()
        for thread in helpers:
            thread.join(s.TIMEOUT)
    try:
        kept = s.quotas(targets[0])
        walked = s.du_quotas(du_target)
        for pattern in patterns:
            assert kept[pattern]["usage"] == walked[pattern]["usage"], (
                pattern, kept[pattern], walked[pattern])
            assert kept[pattern]["usage"] <= LIMIT
    finally:
        for quota in created:
            s.delete_quota(targets[0], quota["id"])
    return outcome


def check(outcome: Outcome) -> None:
    assert not outcome.errors, outcome.errors
    assert not outcome.over, f"usage went over a limit: {outcome.over[:5]}"
    assert outcome.pushed > 0, "no push succeeded"
    assert outcome.refused > 0, "no push was refused: the limit was never reached"
    assert outcome.gc_runs > 0 and outcome.samples > 0
    print(f"\n{outcome.pushed} pushed, {outcome.refused} refused, {outcome.lost_to_gc} lost "
          f"to GC, {outcome.gc_runs} GC runs, {outcome.samples} usage samples")
