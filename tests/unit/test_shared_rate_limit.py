"""Shared rate-limit buckets: several limiters (as in several processes) on one
index never let through more than the bucket holds, batches or not."""

from __future__ import annotations

import threading

import pytest

from ociregistry.auth.bruteforce import FailureLimiter
from ociregistry.auth.ratelimit import SharedRateLimiter, batch_size
from ociregistry.core.errors import TooManyRequests
from ociregistry.metadata.store import MetadataStore


@pytest.fixture
def db(tmp_path):
    store = MetadataStore(f"sqlite:///{tmp_path / 'registry.db'}")
    store.create_schema()
    yield store
    store.dispose()


@pytest.mark.parametrize("batch", [1, 8])
def test_processes_share_one_bucket(db, batch):
    # 0.001/s: nothing refills during the test; a bucket of 40.
    limiters = [SharedRateLimiter(db, "addr", 0.001, 40, batch=batch) for _ in range(3)]
    allowed = [0]
    lock = threading.Lock()

    def hammer(limiter: SharedRateLimiter) -> None:
        for _ in range(30):
            if limiter.check("10.0.0.1") == 0:
                with lock:
                    allowed[0] += 1

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if batch == 1:
        assert allowed[0] == 40  # exact
    else:
        # never more than the bucket; at most batch-1 held back per process
        assert 40 - 3 * (batch - 1) <= allowed[0] <= 40
    # What this process still holds of its last batch may be spent; then it is refused.
    extra = 0
    while limiters[0].check("10.0.0.1") == 0:
        extra += 1
        assert extra < batch, "more than this process's own batch was let through"
    assert allowed[0] + extra <= 40
    assert limiters[0].check("10.0.0.2") == 0  # another key, another bucket


def test_batches_follow_the_rate_and_stay_below_the_burst():
    assert batch_size(0.5, 100) == 1
    assert batch_size(1000, 100) == 25
    assert batch_size(1000, 10_000) == 100
    assert batch_size(5, 1) == 1


def test_failure_counts_are_exact_under_concurrency(db):
    limiters = [FailureLimiter(db, per_address=25, per_user=0, window=300) for _ in range(4)]
    refused = [0]
    lock = threading.Lock()

    def guess(limiter: FailureLimiter) -> None:
        for _ in range(10):
            try:
                limiter.attempt("10.0.0.1", "alice")
            except TooManyRequests:
                with lock:
                    refused[0] += 1

    threads = [threading.Thread(target=guess, args=(lim,)) for lim in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refused[0] == 40 - 25
