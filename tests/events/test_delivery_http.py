"""A sender keeps its endpoint's connection open between requests (HTTP/1.1
keep-alive), answers with a body included: one TCP (and TLS) set-up per endpoint,
not one per request."""

from __future__ import annotations

import time

import requests

from tests.events.receivers import Receiver
from tests.events.test_batches import pending_then_deliver


def test_requests_to_an_endpoint_reuse_its_connection(start_registry):
    # An answer longer than the excerpt the delivery log keeps (500 bytes): the rest
    # is read too, or the connection could not serve the next request.
    receiver = Receiver(keep_alive=True, answer=b"ok " * 400)
    try:
        tags = [f"v{i}" for i in range(4)]
        registry, digests = pending_then_deliver(start_registry, [
            {"name": "alive", "url": receiver.url, "actions": ["manifest.pushed"],
             "batch_max_events": 1},  # one request per event
        ], tags)
        bodies = receiver.wait_for(lambda b: len(b) >= len(tags))
        assert [b["digest"] for b in bodies] == digests
        assert len(receiver.requests) == len(tags)
        assert len({r["peer"] for r in receiver.requests}) == 1  # one connection
        # The receiver has answered the last request; its outcome is written to the
        # delivery log just after: wait for it there.
        log = registry.url + "/api/v1/events/endpoints/alive/deliveries"
        deadline = time.monotonic() + 60
        while True:
            items = requests.get(log, timeout=30).json()["items"]
            if len(items) >= len(tags) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [i["status_code"] for i in items] == [200] * len(tags)
        assert all(i["response"] == ("ok " * 400)[:500] for i in items)
    finally:
        receiver.stop()
