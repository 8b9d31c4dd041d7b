"""Pre-fetch's view of the mirror's fill path (mirror/prefetch.py ``PrefetchSource``).

Lists an upstream's tags with the mirror's upstream client and pulls a tag through
the mirror's own fill functions. Until those exist in this process the source is
None and pre-fetch runs refuse to start (dry runs included: they list upstream).
"""

from __future__ import annotations

from typing import Any

from ociregistry.mirror.prefetch import PrefetchSource


def source(runtime: Any) -> PrefetchSource | None:
    return None
