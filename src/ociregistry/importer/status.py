"""Import runs as the management API and the UI see them (no Flask here).

The command line records its run in the index (``import_runs``): at start, every
few seconds while it runs, and at the end, so anyone with the management API can
follow a migration that runs on another machine. A run whose process died keeps
the state "running" in the row; it is reported as "stalled" once its figures
have not moved for ``STALLED_AFTER`` seconds.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from ociregistry.importer.stats import ImportStats
from ociregistry.metadata import import_queries as q
from ociregistry.metadata.store import MetadataStore

UPDATE_EVERY = 2.0  # seconds between two saves of a running import's figures
STALLED_AFTER = 60.0
MAX_PROBLEMS = 1000  # kept in the row; the command's own summary lists them all
MAX_PAGE = 100


def _figures(stats: ImportStats) -> dict[str, Any]:
    figures = stats.as_dict()
    del figures["problems"], figures["untagged"]
    figures.update(
        repositories_total=stats.repositories_total, manifests_done=stats.manifests_done,
        manifests_total=stats.manifests_total, bytes_done=stats.bytes_done,
        bytes_total=stats.bytes_total, untagged=len(stats.untagged),
        problems=len(stats.problems),
    )
    return figures


class ImportRecorder:
    """Keeps one run's row up to date; call it as the importer's progress hook."""

    def __init__(self, store: MetadataStore, source: str) -> None:
        self.store = store
        self.run_id = q.start_run(store, source, socket.gethostname(), json.dumps({}))
        self._saved = 0.0

    def _save(self, stats: ImportStats, state: str | None = None,
              error: str | None = None) -> None:
        problems = [p.__dict__ for p in stats.problems[:MAX_PROBLEMS]]
        q.update_run(self.store, self.run_id, json.dumps(_figures(stats)),
                     json.dumps(problems), state, error)

    def __call__(self, stats: ImportStats) -> None:
        now = time.monotonic()
        if now - self._saved >= UPDATE_EVERY:
            self._saved = now
            self._save(stats)

    def finish(self, stats: ImportStats, error: str | None = None) -> None:
        self._save(stats, "failed" if error else "finished", error)


class ImportRuns:
    """Reading the runs back: a page of them, or one with its problems."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    @staticmethod
    def _shape(row: dict[str, Any]) -> dict[str, Any]:
        state = row["state"]
        if state == "running" and time.time() - row["updated_at"] > STALLED_AFTER:
            state = "stalled"
        shaped = {k: row[k] for k in ("id", "source", "host", "started_at", "updated_at",
                                      "finished_at", "error")}
        shaped.update(state=state, stats=json.loads(row["stats"]))
        if "problems" in row:
            shaped["problems"] = json.loads(row["problems"])
        return shaped

    def page(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        return [self._shape(row) for row in q.runs(self.store, min(limit, MAX_PAGE), before)]

    def get(self, run_id: int) -> dict[str, Any] | None:
        row = q.run(self.store, run_id)
        return self._shape(row) if row else None
