"""Prometheus gauges of event delivery, read from the index at scrape time:
per endpoint, whether it is enabled, how many events wait and the oldest's age."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ociregistry.metadata import event_queries as q
from ociregistry.metadata.store import MetadataStore


class EventsCollector(Collector):
    def __init__(self, metadata: MetadataStore, max_age: float = 5.0) -> None:
        self.metadata = metadata
        self.max_age = max_age
        self._cache: tuple[float, list[Any]] | None = None
        self._lock = threading.Lock()

    def _rows(self) -> list[Any]:
        with self._lock:
            if self._cache and time.monotonic() - self._cache[0] < self.max_age:
                return self._cache[1]
            endpoints = q.endpoint_rows(self.metadata)
            pending = q.pending(self.metadata)
            now = time.time()
            rows = []
            for row in endpoints:
                count, oldest = pending.get(row.id, (0, None))
                rows.append((row.name, row.enabled, count, now - oldest if oldest else 0.0))
            self._cache = (time.monotonic(), rows)
            return rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            rows = self._rows()
        except Exception:  # before migration 0009, or the database is away: no gauges
            return
        enabled = GaugeMetricFamily("registry_event_endpoint_enabled",
                                    "1 when the endpoint is enabled", labels=["endpoint"])
        waiting = GaugeMetricFamily("registry_event_endpoint_pending",
                                    "Events after the endpoint's cursor", labels=["endpoint"])
        age = GaugeMetricFamily("registry_event_endpoint_pending_age_seconds",
                                "Age of the oldest event not yet handled for the endpoint",
                                labels=["endpoint"])
        for name, on, count, oldest in rows:
            enabled.add_metric([name], 1 if on else 0)
            waiting.add_metric([name], count)
            age.add_metric([name], round(oldest, 3))
        yield enabled
        yield waiting
        yield age
