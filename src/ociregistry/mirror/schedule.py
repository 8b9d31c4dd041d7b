"""Scheduled eviction and pre-fetch: one run per cron firing per upstream, cluster-wide.

Every worker of every instance runs this loop (as lifecycle/schedule.py does for
retention): every ``mirror.schedule_check_seconds`` (jittered) it asks, per upstream,
whether ``mirror.eviction_schedule`` and the upstream's ``prefetch_schedule`` fired
since that upstream's last real run of each (and since this process started: a new
server does not run at once what it never saw fire). A due run takes the
upstream's lock and re-checks the last run inside it, so whoever gets there first
runs it, once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from ociregistry.lifecycle.schedule import last_firing
from ociregistry.metadata import mirror_space_queries as sq
from ociregistry.metadata import retention_queries as rq
from ociregistry.mirror.eviction import policy_name
from ociregistry.mirror.manage import MirrorManager

log = logging.getLogger("ociregistry.mirror")


def due_runs(manager: MirrorManager, now: float, since: float) -> list[tuple[str, str, float]]:
    """(kind "evict" or "sync", upstream, the firing it is due for)."""
    due = []
    settings = manager.settings
    for upstream in settings.upstreams:
        if settings.eviction_schedule and (upstream.evict_unused_after or
                                           upstream.size_budget is not None):
            fired = last_firing(settings.eviction_schedule, now)
            last = rq.last_started(manager.db, policy_name(upstream.name))
            if fired > since and (last is None or last < fired):
                due.append(("evict", upstream.name, fired))
        if upstream.prefetch_schedule and upstream.prefetch:
            fired = last_firing(upstream.prefetch_schedule, now)
            last = sq.last_sync_started(manager.db, upstream.name)
            if fired > since and (last is None or last < fired):
                due.append(("sync", upstream.name, fired))
    return due


class MirrorScheduler:
    def __init__(self, manager: MirrorManager, interval: float) -> None:
        self.manager = manager
        self.interval = interval
        self.started = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="mirror-scheduler", daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval * random.uniform(0.5, 1.0)):
            self.tick()

    def tick(self, now: float | None = None) -> list[Any]:
        """Run what is due now; the results of the runs this process made."""
        done: list[Any] = []
        try:
            for kind, upstream, fired in due_runs(self.manager, now or time.time(),
                                                  self.started):
                if kind == "evict":
                    result = self.manager.eviction.run_if_due(upstream, fired)
                elif self.manager.prefetch.source is None:
                    continue  # the fill path is not built in this process
                else:
                    result = self.manager.prefetch.run_if_due(upstream, fired)
                if result is not None:
                    done.append(result)
                    log.info("scheduled mirror %s: %s", kind, result.summary())
        except Exception:
            log.exception("scheduled mirror eviction or pre-fetch failed")
        return done


def start_mirror_scheduler(runtime: Any) -> MirrorScheduler | None:
    manager = getattr(runtime, "mirror_manage", None)
    if manager is None or not manager.enabled:
        return None
    scheduler = MirrorScheduler(manager, manager.settings.schedule_check_seconds)
    scheduler.thread.start()
    return scheduler
