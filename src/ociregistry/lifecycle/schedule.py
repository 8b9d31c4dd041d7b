"""Scheduled retention: each policy's cron expression, one run per firing cluster-wide.

Every worker of every instance runs this loop (as scheduler.py does for GC):
every ``check_interval_seconds`` (jittered) it asks, for each enabled policy with
a schedule, whether the cron's last firing is later than the policy's last real
run (and than this process's start, so a new server does not run at once what
it never saw fire). Due policies run under the lock ``retention:<policy>``,
which re-checks the last run: whoever gets there first runs it, once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime

from croniter import croniter

from ociregistry.lifecycle.policy import RetentionPolicy
from ociregistry.lifecycle.retention import RetentionService, expiry_policy
from ociregistry.metadata import retention_queries as q

log = logging.getLogger("ociregistry.retention")


def last_firing(schedule: str, now: float) -> float:
    """The latest time at or before ``now`` the cron expression fired (UTC)."""
    base = datetime.fromtimestamp(now, UTC)
    return float(croniter(schedule, base).get_prev(float))


def due_policies(service: RetentionService, now: float,
                 since: float) -> list[tuple[RetentionPolicy, float]]:
    """(policy, the firing it is due for) of every scheduled policy not yet run since."""
    policies = [e.policy for e in service.policies() if e.policy.enabled and e.policy.schedule]
    if service.settings.label_expiry and service.settings.label_expiry_schedule:
        policies.append(expiry_policy().model_copy(
            update={"schedule": service.settings.label_expiry_schedule}))
    due = []
    for policy in policies:
        fired = last_firing(policy.schedule, now)
        if fired <= since:
            continue
        last = q.last_started(service.db, policy.name)
        if last is None or last < fired:
            due.append((policy, fired))
    return due


class RetentionScheduler:
    def __init__(self, service: RetentionService, interval: float) -> None:
        self.service = service
        self.interval = interval
        self.started = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="retention-scheduler",
                                       daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval * random.uniform(0.5, 1.0)):
            self.tick()

    def tick(self) -> None:
        try:
            for policy, fired in due_policies(self.service, time.time(), self.started):
                result = self.service.run_if_due(policy, fired)
                if result is not None:
                    log.info("scheduled retention: %s", result.summary())
        except Exception:
            log.exception("scheduled retention failed")


def start_retention_scheduler(runtime: object) -> RetentionScheduler | None:
    service = getattr(runtime, "retention", None)
    settings = getattr(runtime, "settings", None)
    if service is None or settings is None or not settings.retention.enabled:
        return None
    scheduler = RetentionScheduler(service, settings.retention.check_interval_seconds)
    scheduler.thread.start()
    return scheduler
