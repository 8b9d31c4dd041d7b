"""The delivery worker: each endpoint's events, in commit order, once per endpoint.

Each instance runs one dispatcher thread, in its delivery process (process.py;
under waitress, in the serving process). Every ``poll_interval_seconds``
(jittered, or soon after a wake: the instance's workers committed events; once
per ``batch.max_wait_seconds`` however many) it asks the index for enabled
endpoints with work due and no live lease, and takes the lease of each with a
conditional UPDATE: one process in the whole cluster wins. The winner runs a
sender thread for that endpoint, which renews the lease before each attempt (for
longer than the request may take) and moves the endpoint's cursor only under its
lease token. So:

- an endpoint's events go out one request at a time, in id (= commit) order,
  several per request (``batch.max_events``, or the endpoint's
  ``batch_max_events``; 1 sends each alone). A batch that is not full waits up to
  ``batch.max_wait_seconds`` after its first event and after the endpoint's
  previous request, so a stream of pushes costs a few requests, not one each
  (per-event requests took over a third of push throughput on two cores);
- a failed batch's last event is kept (``batch_end``): its retries carry the same
  events, so the same body and ``webhook-id``; each request is recorded with one
  write (one delivery log row, the cursor moved);
- a slow or dead receiver holds up only its own thread (requests time out);
- a process killed mid-way leaves a lease that expires; another one carries
  on from the cursor. An event whose answer never got recorded (killed between
  the receiver's 2xx and the commit of the cursor) is sent again: delivery is
  at least once, and ``webhook-id`` lets a receiver drop the duplicate.

A failed attempt is retried after exponential backoff with jitter; after
``max_attempts`` or ``max_age_seconds`` the event (every event of the batch) is a
dead letter (logged in
``event_deliveries`` with outcome "dead") and the cursor moves past it.
``disable_after_failures`` consecutive failures disable the endpoint (log,
metric, API and UI show the reason).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ociregistry import metrics
from ociregistry.events.bodies import Bodies
from ociregistry.events.filters import EndpointSpec
from ociregistry.events.formats import (
    BATCH_CONTENT_TYPES,
    CONTENT_TYPES,
    batch_id,
    can_send,
    render,
    render_batch,
    signature_headers,
)
from ociregistry.events.model import Event
from ociregistry.events.sessions import drain, new_session
from ociregistry.events.settings import EventsSettings
from ociregistry.lazy_import import lazy_module
from ociregistry.metadata import event_queries as q
from ociregistry.metadata.store import MetadataStore

requests = lazy_module("requests")  # loaded by the first webhook, not by every server process

log = logging.getLogger("ociregistry.events")
READ_AHEAD = 100  # events read per look (a batch is cut from them; filtered ones skipped)
IDLE_ROUNDS = 20  # polls with nothing to send before a sender gives its lease back
PRUNE_EVERY = 3600.0
LEASE_MARGIN = 20.0


@dataclass
class Attempt:
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None
    response: str | None

    def row(self, attempt: int, outcome: str, batch: list[Event] | None = None
            ) -> dict[str, Any]:
        row = {"attempt": attempt, "outcome": outcome, "status_code": self.status_code,
               "latency_ms": round(self.latency_ms, 1), "error": self.error,
               "response": self.response}
        if batch:
            row.update(last_event_id=batch[-1].id, events=len(batch))
        return row


def send(spec: EndpointSpec, secret: str, msg_id: str, body: bytes,
         session: requests.Session | None = None, batched: bool = False) -> Attempt:
    """One HTTP POST of ``body``, signed; never raises for the receiver's failures."""
    content_type = (BATCH_CONTENT_TYPES if batched else CONTENT_TYPES)[spec.format]
    headers = {**spec.headers, "Content-Type": content_type,
               "User-Agent": "ociregistry-webhooks/1"}
    headers.update(signature_headers(secret, msg_id, int(time.time()), body))
    verify: bool | str = _ca_path(spec) or True
    started = time.monotonic()
    http = session or requests
    try:
        with http.post(spec.url, data=body, headers=headers, verify=verify, stream=True,
                       allow_redirects=False,
                       timeout=(min(5.0, spec.timeout_seconds), spec.timeout_seconds)) as resp:
            excerpt = resp.raw.read(500, decode_content=True)
            latency = (time.monotonic() - started) * 1000
            text = excerpt.decode("utf-8", "replace")
            if session is not None:
                drain(resp)  # the connection stays open for the endpoint's next request
            return Attempt(200 <= resp.status_code < 300, resp.status_code, latency, None, text)
    except (requests.RequestException, OSError, ValueError) as exc:
        latency = (time.monotonic() - started) * 1000
        return Attempt(False, None, latency, f"{type(exc).__name__}: {exc}"[:500], None)


def request_body(spec: EndpointSpec, events: list[Event], batched: bool,
                 registry_url: str = "") -> bytes | None:
    """What one request to ``spec`` carries for ``events`` (one event unless batched)."""
    if batched:
        rendered = render_batch(events, spec.format, registry_url)
        return rendered[0] if rendered is not None else None
    return render(events[0], spec.format, registry_url)


def _ca_path(spec: EndpointSpec) -> str | None:
    if spec.ca_file:
        return spec.ca_file
    if spec.ca_pem:
        import hashlib
        import os
        import tempfile

        path = os.path.join(tempfile.gettempdir(),
                            f"ociregistry-ca-{hashlib.sha256(spec.ca_pem.encode()).hexdigest()}.pem")
        if not os.path.exists(path):
            with open(path + ".tmp", "w") as out:
                out.write(spec.ca_pem)
            os.replace(path + ".tmp", path)
        return path
    return None


class Delivery:
    def __init__(self, store: MetadataStore, settings: EventsSettings,
                 registry_url: str = "") -> None:
        self.store = store
        self.settings = settings
        self.registry_url = registry_url
        self.token = uuid.uuid4().hex
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._senders: dict[int, threading.Thread] = {}
        self._thread: threading.Thread | None = None
        self._pruned = 0.0
        self._active = True  # some endpoint is enabled (refreshed every poll)
        self._enabled: set[int] | None = None  # which ones (None: not known yet)
        self._sent: dict[int, float] = {}  # endpoint id -> when its last request went
        self._trickle: set[int] = set()  # endpoints whose last batch was not full
        self.bodies = Bodies(registry_url)  # events parsed and rendered once, shared

    # A lease outlives the request it covers (renewed before each attempt for the
    # endpoint's timeout + LEASE_MARGIN), and expires soon after a killed worker's.
    lease_seconds = 30.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._dispatch, name="events-dispatch",
                                        daemon=True)
        self._thread.start()

    def stop(self, wait: float = 2.0) -> None:
        """Stop; senders finish their current request (bounded wait) and release leases."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + wait
        for thread in list(self._senders.values()):
            thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        """This process is committing events: look for work soon (when there are
        endpoints at all; with none, a push costs the dispatcher nothing)."""
        if self._active and not self._wake.is_set():
            self._wake.set()

    def _dispatch(self) -> None:
        poll = self.settings.poll_interval_seconds
        # A burst of commits is one look at the index per this much, not one each:
        # batches wait this long for company anyway.
        coalesce = max(0.05, min(poll, self.settings.batch.max_wait_seconds))
        looked = refreshed = 0.0
        while not self._stop.is_set():
            woken = self._wake.wait(poll * random.uniform(0.5, 1.0))
            if woken:
                # Woken inside the committing transaction: let it (and its fellows) commit.
                self._stop.wait(max(0.05, looked + coalesce - time.monotonic()))
                self._wake.clear()
            looked = time.monotonic()
            if not woken or looked - refreshed >= poll:
                # (at least once per poll, under a stream of commits too: a new endpoint
                # is claimed, old events pruned)
                refreshed = looked
                with contextlib.suppress(Exception):
                    self._enabled = q.enabled_ids(self.store)
                    self._active = bool(self._enabled)
            elif self._sending_all():
                continue  # this process's senders already read the new events
            try:
                self._claim()
                self._prune()
            except Exception:
                log.exception("event dispatch failed")

    def _sending_all(self) -> bool:
        """Whether a sender of this process runs for every enabled endpoint (a wake
        then needs no look at the index: each sender reads its endpoint's events)."""
        if not self._enabled:
            return False
        return all((t := self._senders.get(i)) is not None and t.is_alive()
                   for i in self._enabled)

    def _claim(self) -> None:
        for endpoint_id in q.claimable(self.store, time.time()):
            running = self._senders.get(endpoint_id)
            if running is not None and running.is_alive():
                continue
            if not q.take_lease(self.store, endpoint_id, self.token, self.lease_seconds):
                continue
            thread = threading.Thread(target=self._sender, args=(endpoint_id,),
                                      name=f"events-send-{endpoint_id}", daemon=True)
            self._senders[endpoint_id] = thread
            thread.start()

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        if self.store.try_lock("events-prune", self.token, ttl=600):
            q.prune(self.store, now - self.settings.retention_seconds)

    # -- one endpoint ------------------------------------------------------------------
    def _sender(self, endpoint_id: int) -> None:
        session = new_session()
        idle = 0
        renewed = time.monotonic()  # the dispatcher has just taken the lease
        try:
            while not self._stop.is_set() and idle < IDLE_ROUNDS:
                row = q.endpoint_by_id(self.store, endpoint_id)
                if row is None or not row.enabled or row.lease_token != self.token:
                    return
                timeout = float(json.loads(row.spec).get("timeout_seconds", 10))
                lease = max(self.lease_seconds, timeout + LEASE_MARGIN)
                # Renewed when a third of it is gone (settling renews it too): an idle
                # or waiting sender does not write every poll.
                due = time.monotonic() - renewed > self.lease_seconds / 3
                if due or lease > self.lease_seconds:
                    if not q.take_lease(self.store, endpoint_id, self.token, lease):
                        return
                    renewed = time.monotonic()
                wait = row.next_attempt_at - time.time()
                if wait > 0:
                    self._stop.wait(min(wait, self.settings.poll_interval_seconds))
                    continue
                if self._step(row, session):
                    idle = 0
                else:
                    idle += 1
                    self._stop.wait(self.settings.poll_interval_seconds)
        except Exception:
            log.exception("event delivery to endpoint %s failed", endpoint_id)
        finally:
            session.close()
            q.release_lease(self.store, endpoint_id, self.token)

    def _step(self, row: Any, session: requests.Session) -> bool:
        """Handle the endpoint's next request (a redelivery, or the next batch of
        events, which may first wait a little for company); False when there was
        nothing to do."""
        spec = EndpointSpec.from_dict(json.loads(row.spec))
        lease = max(self.lease_seconds, spec.timeout_seconds + LEASE_MARGIN)
        size = spec.batch_size(self.settings.batch.max_events)
        again = q.redelivery(self.store, row.id) if row.redo else None
        if again is not None:  # one event per request, in the endpoint's form
            event = Event.from_row(again)
            body = request_body(spec, [event], size > 1, self.registry_url)
            if body is None:
                q.settle(self.store, row.id, self.token, event_id=event.id, redelivery=True,
                         attempt=None, advance_to=None, success=None, lease_seconds=lease)
            else:
                self._attempt(row, spec, session, [event], body, size > 1, event.id, True,
                              lease)
            return True
        frozen = row.batch_end  # a failed batch is retried with the same events
        max_wait = self.settings.batch.max_wait_seconds
        if frozen is None and row.id in self._trickle:
            # The last batch was not full: the next cannot go before max_wait after it,
            # so wait before reading (a stream of pushes: one read per batch).
            wait = self._sent.get(row.id, 0.0) + max_wait - time.time()
            if wait > 0 and self._stop.wait(min(wait, max_wait)):
                return True
        rows = q.events_after(self.store, row.cursor, max(size, READ_AHEAD), frozen)
        if not rows:
            if frozen is not None:  # its events were pruned meanwhile
                q.settle(self.store, row.id, self.token, event_id=frozen, redelivery=False,
                         attempt=None, advance_to=frozen, success=None, lease_seconds=lease)
            return frozen is not None
        batch: list[Event] = []
        end = rows[-1].id
        for event_row in rows:
            # Filters look at columns only: a body is parsed for the events sent.
            head = Event.head(event_row)
            if spec.matches(head) and can_send(head, spec.format):
                batch.append(self.bodies.event(event_row))
                event = batch[-1]
                if len(batch) == size:
                    end = event.id
                    break
        if frozen is not None:
            end = max(end, frozen) if len(batch) < size else end
        elif batch and len(batch) < size:
            # Not full: send once max_wait has passed since its first event and since
            # this endpoint's previous request (a steady stream goes out in batches).
            since = max(batch[0].created_at, self._sent.get(row.id, 0.0))
            wait = since + max_wait - time.time()
            if wait > 0:
                self._stop.wait(min(wait, max_wait))
                return True
        if not batch:  # filtered out, or not in this format: the cursor moves past
            q.settle(self.store, row.id, self.token, event_id=end, redelivery=False,
                     attempt=None, advance_to=end, success=None, lease_seconds=lease)
            return True
        body = self.bodies.body(batch, spec.format, size > 1)
        assert body is not None
        self._attempt(row, spec, session, batch, body, size > 1, end, False, lease)
        if len(batch) < size:
            self._trickle.add(row.id)
        else:
            self._trickle.discard(row.id)
        return True

    def _attempt(self, row: Any, spec: EndpointSpec, session: requests.Session,
                 batch: list[Event], body: bytes, batched: bool, end: int, redelivery: bool,
                 lease: float) -> None:
        """One request carrying ``batch`` (the events up to ``end``), recorded at once:
        one delivery log row, the cursor moved past ``end`` or the batch kept for a
        retry."""
        msg_id = batch_id(row.id, batch) if batched else batch[0].uid
        result = send(spec, row.secret, msg_id, body, session, batched)
        self._sent[row.id] = time.time()
        metrics.EVENT_BATCH_SIZE.labels(row.name).observe(len(batch))
        first = batch[0].id
        if result.ok:
            metrics.EVENT_DELIVERIES.labels(row.name, "delivered").inc(len(batch))
            q.settle(self.store, row.id, self.token, event_id=first, redelivery=redelivery,
                     attempt=result.row(row.head_attempts + 1, "delivered", batch),
                     advance_to=None if redelivery else end, success=True,
                     lease_seconds=lease)
            return
        self._failed(row, batch, end, result, redelivery, lease)

    def _failed(self, row: Any, batch: list[Event], end: int, result: Attempt,
                redelivery: bool, lease: float) -> None:
        """Record a failed attempt: retry after backoff, dead letters, or disable."""
        attempts = row.head_attempts + 1
        name = row.name
        cfg = self.settings
        failures = row.failures + 1
        dead = attempts >= cfg.max_attempts or \
            time.time() - batch[0].created_at > cfg.max_age_seconds
        backoff = min(cfg.backoff_max_seconds, cfg.backoff_initial_seconds * 2 ** (attempts - 1))
        backoff = backoff / 2 + random.uniform(0, backoff / 2)  # jitter: workers don't align
        disable = None
        if failures >= cfg.disable_after_failures:
            disable = f"{failures} consecutive failed deliveries"
            metrics.EVENT_ENDPOINTS_DISABLED.labels(name).inc()
            log.warning("events: endpoint %s disabled after %s consecutive failures (last: %s)",
                        name, failures, result.error or result.status_code)
        metrics.EVENT_DELIVERIES.labels(name, "dead" if dead else "failed").inc(len(batch))
        if dead:
            log.warning("events: %s event(s) from %s to %s are dead letters after %s attempts",
                        len(batch), batch[0].uid, name, attempts)
        first = batch[0].id
        q.settle(self.store, row.id, self.token, event_id=first, redelivery=redelivery,
                 attempt=result.row(attempts, "dead" if dead else "failed", batch),
                 advance_to=end if dead and not redelivery else None, success=False,
                 next_attempt_at=0 if dead else time.time() + backoff, disable=disable,
                 lease_seconds=lease, batch_end=end)
        if dead and redelivery:
            q.settle(self.store, row.id, self.token, event_id=first, redelivery=True,
                     attempt=None, advance_to=None, success=None, lease_seconds=lease)
