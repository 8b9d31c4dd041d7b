"""What an import counts and reports: its figures and the problems it met."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problem:
    kind: str  # empty-link, missing-blob, bad-link, unparsable-manifest, ...
    path: str  # where in the source, for the operator to look
    detail: str


@dataclass
class ImportStats:
    """Counters the progress display and the summary read (updated as it goes)."""

    repositories_total: int = 0
    repositories_done: int = 0
    manifests_total: int = 0
    manifests_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)

    manifests_imported: int = 0
    manifests_present: int = 0
    tags_imported: int = 0
    tags_present: int = 0
    blobs_copied: int = 0
    bytes_copied: int = 0
    blobs_linked: int = 0
    blobs_present: int = 0
    untagged: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repositories": self.repositories_done,
            "manifests_imported": self.manifests_imported,
            "manifests_present": self.manifests_present,
            "tags_imported": self.tags_imported,
            "tags_present": self.tags_present,
            "blobs_copied": self.blobs_copied,
            "bytes_copied": self.bytes_copied,
            "blobs_linked": self.blobs_linked,
            "blobs_present": self.blobs_present,
            "untagged": self.untagged,
            "problems": [p.__dict__ for p in self.problems],
        }
