"""Durations as people write them in policies and labels: ``30m``, ``12h``, ``2d``, ``3w``."""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"([0-9]{1,9})([smhdw])")
_WHOLE = re.compile(r"(?:[0-9]{1,9}[smhdw]){1,5}")


def parse_duration(text: str) -> float:
    """Seconds of ``text`` (``2w``, ``1d12h``); ValueError when it is not one."""
    value = text.strip().lower()
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"not a duration: {text!r} (e.g. 30m, 12h, 2d, 3w)")
    return float(sum(int(n) * UNITS[unit] for n, unit in _PART.findall(value)))


def try_duration(text: object) -> float | None:
    """Seconds of ``text``, or None when it is not a duration (labels are free text)."""
    if not isinstance(text, str):
        return None
    try:
        return parse_duration(text)
    except ValueError:
        return None
