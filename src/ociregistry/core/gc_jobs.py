"""Garbage collections started from the web UI, and the UI's session key (no Flask)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Any

from ociregistry.core.gc import GarbageCollector, GCAlreadyRunning
from ociregistry.core.registry import Registry
from ociregistry.metadata import browse_queries as q
from ociregistry.metadata import shared_state as shared
from ociregistry.metadata.store import MetadataStore

log = logging.getLogger("ociregistry.ui")


# -- garbage collections started from the UI -------------------------------------
ACTIVE_STATES = ("starting", "running")


class GCJobs:
    """Runs a garbage collection in a background thread and reports its progress.

    The progress goes to a row of the index (shared_state), so whichever
    worker process or instance answers the next poll can show it. Whether any
    collection is running (started here, by the CLI, the API or the schedule,
    on any instance) comes from the collector's lock row.
    """

    STALE_SECONDS = 60.0  # a "running" file nobody updated while no lock is held

    NAME = "ui.gc_progress"

    def __init__(self, gc: GarbageCollector, registry: Registry) -> None:
        self.gc = gc
        self.db = registry.db
        self._lock = threading.Lock()

    def start(self, dry_run: bool, delete_untagged: bool, started_by: str | None) -> str | None:
        """Start a run; its job id, or None when a collection is already running."""
        with self._lock:
            if self.status()["running"]:
                return None
            # The lock is taken here, not in the thread: of two processes or
            # instances starting at once, exactly one gets a job id.
            holder = self.gc.acquire()
            if holder is None:
                return None
            job = secrets.token_hex(8)
            state = {
                "job": job, "state": "starting", "dry_run": dry_run,
                "delete_untagged": delete_untagged, "started_by": started_by,
                "started_at": time.time(), "phase": "", "done": 0, "total": 0,
            }
            self._write(state)
        thread = threading.Thread(target=self._run, args=(state, holder), daemon=True,
                                  name=f"ui-gc-{job}")
        thread.start()
        return job

    def _run(self, state: dict[str, Any], holder: str | None = None) -> None:
        last = [0.0, ""]

        def progress(phase: str, done: int, total: int) -> None:
            now = time.monotonic()
            if phase != last[1] or done >= total or now - last[0] >= 0.2:
                last[0], last[1] = now, phase
                self._write({**state, "state": "running", "phase": phase, "done": done,
                             "total": total, "updated_at": time.time()})

        self._write({**state, "state": "running", "updated_at": time.time()})
        try:
            result = self.gc.run(dry_run=state["dry_run"],
                                 delete_untagged=state["delete_untagged"], progress=progress,
                                 holder=holder)
        except GCAlreadyRunning as exc:
            self._write({**state, "state": "refused", "error": str(exc),
                         "finished_at": time.time()})
        except Exception as exc:  # reported to the page; the collector logs nothing itself
            log.exception("garbage collection started from the UI failed")
            self._write({**state, "state": "failed", "error": f"{type(exc).__name__}: {exc}",
                         "finished_at": time.time()})
        else:
            self._write({**state, "state": "finished", "result": result.as_dict(),
                         "finished_at": time.time()})

    def status(self) -> dict[str, Any]:
        state: dict[str, Any] = {"state": "idle"}
        try:
            loaded = json.loads(shared.get(self.db, self.NAME) or "{}")
            if isinstance(loaded, dict) and loaded:
                state = loaded
        except ValueError:
            pass
        locked = q.gc_lock_held(self.db)
        active = state.get("state") in ACTIVE_STATES
        if active and not locked:
            touched = state.get("updated_at") or state.get("started_at") or 0
            if time.time() - touched > self.STALE_SECONDS:
                state = {**state, "state": "interrupted"}
                active = False
        state["running"] = active or locked
        state["elsewhere"] = locked and not active
        return state

    def _write(self, state: dict[str, Any]) -> None:
        shared.put(self.db, self.NAME, json.dumps(state))


def ui_secret_key(db: MetadataStore) -> bytes:
    """The key that signs the UI's session cookies when ui.secret_key is not set:
    made once and kept in the index, so every process and instance signs alike."""
    return shared.get_or_create(db, "ui.secret_key", secrets.token_hex(32)).encode()
