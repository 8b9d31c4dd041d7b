"""Scheduled garbage collection.

Every worker (and every instance) runs this loop, but a run happens only when
the cluster-wide GC lock is free and the last finished run is older than the
interval, both decided inside the lock: one run per interval, whoever gets
there first.
"""

from __future__ import annotations

import logging
import random
import threading

from ociregistry.core.gc import GCAlreadyRunning
from ociregistry.runtime import Runtime

log = logging.getLogger("ociregistry.gc")


def start_gc_scheduler(runtime: Runtime) -> threading.Thread | None:
    interval = runtime.settings.gc.interval_seconds
    if interval <= 0:
        return None
    thread = threading.Thread(
        target=_loop, args=(runtime, interval), name="gc-scheduler", daemon=True
    )
    thread.start()
    return thread


def _loop(runtime: Runtime, interval: float) -> None:
    # Check a few times per interval, with jitter so workers don't line up.
    pause = min(interval / 4, 60.0)
    stop = threading.Event()
    while not stop.wait(pause * random.uniform(0.5, 1.0)):
        try:
            result = runtime.gc.run_if_due(
                interval, delete_untagged=runtime.settings.gc.delete_untagged
            )
        except GCAlreadyRunning:
            continue
        except Exception:
            log.exception("scheduled garbage collection failed")
            continue
        if result is not None:
            log.info("scheduled garbage collection: %s", result.as_dict())
