"""What eviction would remove from one upstream's cache: pure code, no I/O.

Input is a snapshot of the upstream's local repositories (``<name>/...``): tags
with their fill and pull times, manifests with theirs, index children, subjects,
and the blobs each manifest references with their sizes. Output is the exact list
of deletions (lifecycle.plan.Deletion, the type retention executes), each with its
reason, and the cache's size before and after.

Two rules, in this order:

1. **Unused**: a tag whose last use is older than ``evict_unused_after`` goes.
   A tag's last use is the latest of: its fill (push) time, its last pull, and the
   last pull of its manifest or of any manifest under it (a platform image pulled
   by digest keeps its index's tag). An untagged manifest that nothing holds is
   judged the same way on its own times.
2. **Size budget**: while the cache holds more than ``size_budget`` bytes (distinct
   blobs plus manifests), the least recently used tag or untagged manifest goes
   next (ties: by name).

A manifest goes with the last thing that held it (tags, a parent index, its
subject), never while something that stays holds it, and never inside the GC
grace period (the executor re-checks all of this). Pinned tags or repositories
(``pinned`` globs) and immutable tags are never evicted, nor what they hold.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ociregistry.auth.rules import glob_match
from ociregistry.lifecycle.plan import Deletion, age


@dataclass
class CachedTag:
    repository: str  # local name: <upstream>/<upstream repository>
    name: str
    manifest_id: int
    pushed_at: float  # when the mirror set it (fill, or a moved tag)
    last_pulled_at: float | None = None


@dataclass
class CachedManifest:
    id: int
    repository: str
    digest: str
    size: int
    created_at: float
    last_pulled_at: float | None = None
    subject: str | None = None
    children: tuple[str, ...] = ()
    blobs: tuple[str, ...] = ()


@dataclass
class CacheSnapshot:
    upstream: str
    tags: list[CachedTag] = field(default_factory=list)
    manifests: dict[int, CachedManifest] = field(default_factory=dict)
    blob_sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class SpaceRules:
    now: float
    unused_after: float = 0.0  # seconds; 0: no eviction by age
    budget: int | None = None  # bytes; None: no budget
    grace: float = 0.0  # GC grace period: nothing younger is deleted
    pinned: Callable[[str, str | None], bool] = lambda _repo, _tag: False
    protected: Callable[[str, str], bool] = lambda _repo, _tag: False  # immutable tags


@dataclass
class SpacePlan:
    upstream: str
    deletions: list[Deletion] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def bytes_freed(self) -> int:
        return self.bytes_before - self.bytes_after

    def count(self, kind: str) -> int:
        return sum(1 for d in self.deletions if d.kind == kind)


def pinned_matcher(upstream: str, globs: Iterable[str]) -> Callable[[str, str | None], bool]:
    """(local repository, tag or None) -> pinned. A glob names upstream repositories
    (``library/*``: ``*`` within a path component, ``**`` across) and optionally
    ``:tag-glob`` (``library/alpine:3.*``); without one every tag is pinned, and so is
    what the repository holds untagged. ``tag`` None asks about untagged content."""
    rules: list[tuple[str, str | None]] = []
    for text in globs:
        repo, sep, tag = text.rpartition(":") if ":" in text else (text, "", "")
        rules.append((repo, tag if sep else None))
    prefix = upstream + "/"

    def pinned(repository: str, tag: str | None) -> bool:
        if not repository.startswith(prefix):
            return False
        name = repository[len(prefix):]
        for repo_glob, tag_glob in rules:
            if not glob_match(repo_glob, name):
                continue
            if tag_glob is None or (tag is not None and fnmatch.fnmatchcase(tag, tag_glob)):
                return True
        return False

    return pinned


class _Graph:
    """Who holds each manifest (tags, a parent index, its subject, itself as a root) and
    which manifests reference each blob, updated as things go."""

    def __init__(self, snap: CacheSnapshot) -> None:
        self.snap = snap
        by_digest = {(m.repository, m.digest): m.id for m in snap.manifests.values()}
        self.held_by: dict[int, int] = {mid: 0 for mid in snap.manifests}
        self.parents: dict[int, list[int]] = {}  # manifest -> the manifests it holds
        for m in snap.manifests.values():
            held = [by_digest[(m.repository, d)] for d in m.children
                    if (m.repository, d) in by_digest]
            if m.subject and (m.repository, m.subject) in by_digest:
                # the subject holds its referrer (GC deletes a referrer after its subject)
                self.parents.setdefault(by_digest[(m.repository, m.subject)], []).append(m.id)
            self.parents.setdefault(m.id, []).extend(held)
        for holds in self.parents.values():
            for child in holds:
                self.held_by[child] += 1
        for tag in snap.tags:
            if tag.manifest_id in self.held_by:
                self.held_by[tag.manifest_id] += 1
        # untagged manifests nothing else holds are roots: they hold themselves
        self.roots = {mid for mid, n in self.held_by.items() if n == 0}
        for mid in self.roots:
            self.held_by[mid] = 1
        self.blob_refs: dict[str, int] = {}
        for m in snap.manifests.values():
            for b in set(m.blobs):
                self.blob_refs[b] = self.blob_refs.get(b, 0) + 1
        self.gone: set[int] = set()
        self.size = sum(snap.blob_sizes.get(b, 0) for b in self.blob_refs) + sum(
            m.size for m in snap.manifests.values())

    def tree_last_use(self, mid: int, seen: set[int] | None = None) -> float:
        """Latest of the manifest's own times and those of what it holds."""
        seen = seen if seen is not None else set()
        if mid in seen:
            return 0.0
        seen.add(mid)
        m = self.snap.manifests[mid]
        best = max(m.created_at, m.last_pulled_at or 0.0)
        for child in self.parents.get(mid, ()):
            best = max(best, self.tree_last_use(child, seen))
        return best

    def reachable(self, mid: int, seen: set[int] | None = None) -> set[int]:
        seen = seen if seen is not None else set()
        if mid not in seen:
            seen.add(mid)
            for child in self.parents.get(mid, ()):
                self.reachable(child, seen)
        return seen

    def release(self, mid: int, now: float, grace: float) -> list[int]:
        """One holder of ``mid`` let go; the manifests that go as a result (parents first)."""
        self.held_by[mid] -= 1
        m = self.snap.manifests[mid]
        if self.held_by[mid] > 0 or mid in self.gone or m.created_at > now - grace:
            return []
        self.gone.add(mid)
        self.size -= m.size
        for b in set(m.blobs):
            self.blob_refs[b] -= 1
            if self.blob_refs[b] == 0:
                self.size -= self.snap.blob_sizes.get(b, 0)
        out = [mid]
        for child in self.parents.get(mid, ()):
            out += self.release(child, now, grace)
        return out


def plan_space(snap: CacheSnapshot, rules: SpaceRules) -> SpacePlan:
    """Every deletion eviction would make now in ``snap``, with the sizes around it."""
    graph = _Graph(snap)
    plan = SpacePlan(snap.upstream, bytes_before=graph.size)
    policy = f"mirror:{snap.upstream}"

    # Units: each tag, and each untagged root manifest, with its last use.
    units: list[tuple[float, str, CachedTag | None, int]] = []
    kept_trees: set[int] = set()  # pinned or immutable: never goes, nor what it holds
    for tag in snap.tags:
        if tag.manifest_id not in snap.manifests:
            continue
        if rules.pinned(tag.repository, tag.name) or rules.protected(tag.repository, tag.name):
            kept_trees |= graph.reachable(tag.manifest_id)
            continue
        last = max(tag.pushed_at, tag.last_pulled_at or 0.0,
                   graph.tree_last_use(tag.manifest_id))
        units.append((last, f"{tag.repository}:{tag.name}", tag, tag.manifest_id))
    for mid in sorted(graph.roots):
        m = snap.manifests[mid]
        if rules.pinned(m.repository, None):
            kept_trees |= graph.reachable(mid)
            continue
        units.append((graph.tree_last_use(mid), f"{m.repository}@{m.digest}", None, mid))
    for mid in kept_trees:
        graph.held_by[mid] += 1  # an extra holder that is never released
    units.sort(key=lambda u: (u[0], u[1]))

    def evict(unit: tuple[float, str, CachedTag | None, int], rule: str) -> None:
        last, _key, tag, mid = unit
        if tag is not None:
            plan.deletions.append(Deletion(
                "tag", tag.repository, snap.manifests[mid].digest, mid, tag.name, policy,
                rule, tag.pushed_at, tag.last_pulled_at))
        for gone in graph.release(mid, rules.now, rules.grace):
            m = snap.manifests[gone]
            why = rule if gone == mid else f"held only by evicted content ({rule})"
            plan.deletions.append(Deletion("manifest", m.repository, m.digest, m.id, None,
                                           policy, why, m.created_at, m.last_pulled_at))

    left = []
    cutoff = rules.now - rules.unused_after
    for unit in units:
        if rules.unused_after > 0 and unit[0] < cutoff:
            evict(unit, f"unused for {age(rules.now - unit[0])} "
                        f"(evict_unused_after {age(rules.unused_after)})")
        else:
            left.append(unit)
    if rules.budget is not None:
        for unit in left:
            if graph.size <= rules.budget:
                break
            evict(unit, f"over the size budget of {rules.budget} bytes: least recently "
                        f"used (last {age(rules.now - unit[0])} ago)")
    plan.bytes_after = graph.size
    return plan
