"""Builds the mirror's management side (eviction, pre-fetch, the manager) into the runtime.

Called once by runtime.build_runtime, after lifecycle and events: evictions emit
their events through retention's deletion hook, read at each deletion (so the
order in which hooks are connected does not matter).
"""

from __future__ import annotations

from typing import Any

from ociregistry.mirror.eviction import EvictionService
from ociregistry.mirror.manage import MirrorManager
from ociregistry.mirror.prefetch import PrefetchService, PrefetchSource


def prefetch_source(runtime: Any) -> PrefetchSource | None:
    """The mirror's fill path as pre-fetch sees it; None while the mirror is not built."""
    from ociregistry.mirror import prefetch_fill

    return prefetch_fill.source(runtime)


def build_mirror_management(runtime: Any) -> MirrorManager:
    settings = runtime.settings
    tags = getattr(runtime, "tags", None)
    eviction = EvictionService(
        runtime.metadata, settings.mirror, grace=settings.gc.grace_period_seconds,
        protected=tags.rules.is_immutable if tags else None)
    retention = getattr(runtime, "retention", None)

    def deleted(conn: Any, deletion: Any) -> None:
        hook = getattr(retention, "on_delete", None)
        if hook is not None:  # events: tag.deleted, as for retention's deletions
            hook(conn, deletion)

    eviction.on_delete = deleted
    prefetch = PrefetchService(runtime.metadata, settings.mirror, prefetch_source(runtime))
    return MirrorManager(runtime.metadata, settings.mirror, eviction, prefetch)
