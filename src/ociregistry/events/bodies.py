"""Request bodies shared by the senders of one delivery process.

Every endpoint's sender reads the same new events from the outbox; each used to
parse every event's JSON and render it in its endpoint's format, so three
endpoints cost three times the work for the same bytes. ``Bodies`` keeps the
recent events parsed once and their fragments rendered once per format
(``formats.fragment``); a sender assembles its batch from the fragments, which
does not depend on where each endpoint cuts its batches. Events never change
once committed; an entry is keyed by the event's id and public id both (a
pruned outbox on SQLite may hand an id out again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ociregistry.events.formats import assemble, fragment
from ociregistry.events.model import Event

KEEP = 4096  # events kept (a few batches of every endpoint that is behind)


class Bodies:
    def __init__(self, registry_url: str = "", keep: int = KEEP) -> None:
        self.registry_url = registry_url
        self.keep = keep
        self._events: OrderedDict[tuple[int, str], Event] = OrderedDict()
        self._pieces: OrderedDict[tuple[int, str, str], bytes | None] = OrderedDict()
        self._lock = threading.Lock()

    def event(self, row: Any) -> Event:
        """The event of an outbox row, parsed once."""
        key = (row.id, row.uid)
        with self._lock:
            event = self._events.get(key)
        if event is None:
            event = Event.from_row(row)  # (outside the lock; two may parse, one is kept)
            with self._lock:
                self._events[key] = event
                if len(self._events) > self.keep:
                    self._events.popitem(last=False)
        return event

    def body(self, events: Sequence[Event], fmt: str, batched: bool) -> bytes | None:
        """What ``formats.request_body`` gives for these events, from shared fragments."""
        return assemble([self._piece(e, fmt) for e in events], fmt, batched)

    def _piece(self, event: Event, fmt: str) -> bytes | None:
        key = (event.id, event.uid, fmt)
        with self._lock:
            if key in self._pieces:
                return self._pieces[key]
        piece = fragment(event, fmt, self.registry_url)
        with self._lock:
            self._pieces[key] = piece
            if len(self._pieces) > 3 * self.keep:
                self._pieces.popitem(last=False)
        return piece
