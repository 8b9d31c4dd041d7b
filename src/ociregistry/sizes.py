"""Sizes as people write them in the configuration and forms: ``10GiB``, ``500 MB``."""

from __future__ import annotations

import re
from typing import Any

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]i?B|B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50}


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string such as "10GiB", "500 MB", "1.5TiB"."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string such as 10GiB")
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (bytes, or e.g. 10GiB, 500MB)")
    return int(float(match[1]) * _UNITS[(match[2] or "").lower()])
