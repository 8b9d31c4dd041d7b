"""Garbage collection runs, for administrators (the management API). No Flask here.

Runs start through core/gc_jobs.py, the job runner the web UI uses: one
cluster-wide lock (a run started from the UI, the API, the CLI or the schedule
refuses the others), progress kept in the index so any worker or instance
answers a poll. History is the ``gc_runs`` table: real runs only; a dry run's
figures are in its job's result.
"""

from __future__ import annotations

from typing import Any

from ociregistry.admin.errors import Conflict, InvalidRequest
from ociregistry.core.gc_jobs import GCJobs
from ociregistry.metadata import gc_queries as q

MAX_PAGE = 1000


class GCAdmin:
    def __init__(self, jobs: GCJobs) -> None:
        self.jobs = jobs

    def start(self, dry_run: bool = False, delete_untagged: bool = False,
              started_by: str | None = None) -> dict[str, Any]:
        """Start a run in the background; its status (with its ``job`` id).

        Conflict when a collection is already running, wherever it was started.
        """
        job = self.jobs.start(dry_run, delete_untagged, started_by)
        if job is None:
            raise Conflict("a garbage collection is already running")
        return self.status()

    def status(self) -> dict[str, Any]:
        """The latest run started through the job runner (running, finished, failed...),
        ``running`` true whenever any collection holds the lock."""
        return self.jobs.status()

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The status of job ``job_id`` while it is the latest one; None otherwise."""
        status = self.status()
        return status if status.get("job") == job_id else None

    def history(self, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit: 1 to {MAX_PAGE}")
        return q.run_history(self.jobs.db, limit, before)
