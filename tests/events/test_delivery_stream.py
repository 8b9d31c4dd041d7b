"""Under a steady stream of pushes the delivery worker is woken by every commit;
it must still notice endpoints added meanwhile (it skips its look at the index
while its own senders cover every endpoint it knows)."""

from __future__ import annotations

import threading
import time

import requests

from tests.events.receivers import Receiver
from tests.events.test_delivery import push


def test_an_endpoint_added_during_a_stream_of_pushes_gets_events(start_registry, receiver):
    # One worker: its dispatcher alone can claim the new endpoint. A poll interval far
    # longer than the gap between commits: it is woken by commits, never by its timer.
    registry = start_registry([{"name": "first", "url": receiver.url,
                                "actions": ["manifest.pushed"]}],
                              workers=1, poll_interval_seconds=10.0)
    push(registry.url, "stream", "before")
    receiver.wait_for(lambda b: len(b) >= 1, timeout=120)  # "first" has a sender
    # Quiet for longer than the poll interval: the dispatcher's timer has fired and
    # it knows the enabled endpoints (all served by its senders from now on).
    time.sleep(11.0)
    stop = threading.Event()
    pushed: list[str] = []

    def pusher(n: int) -> None:
        i = 0
        while not stop.is_set():
            push(registry.url, "stream", f"p{n}-{i}")
            pushed.append(f"p{n}-{i}")
            i += 1

    threads = [threading.Thread(target=pusher, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    second = Receiver()
    try:
        receiver.wait_for(lambda b: len(b) >= 4, timeout=120)  # the stream flows
        r = requests.post(f"{registry.url}/api/v1/events/endpoints",
                          json={"name": "second", "url": second.url,
                                "actions": ["manifest.pushed"]}, timeout=30)
        assert r.status_code == 201, r.text
        # Pushes go on all the while: the new endpoint is served during the stream.
        bodies = second.wait_for(lambda b: len(b) >= 1, timeout=120)
        assert not stop.is_set() and all(t.is_alive() for t in threads)
        assert bodies[0]["action"] == "manifest.pushed"
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        second.stop()
    assert pushed
