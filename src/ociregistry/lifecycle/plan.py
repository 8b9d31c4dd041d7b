"""What a retention policy (or label expiry) would delete in one repository: pure code.

Input is a snapshot of one repository (tags with their push and pull times,
manifests with theirs, index children, subjects, label expiries); output is the
exact list of deletions, each with the rule that decided it. Nothing here reads
or writes the index, so every rule is tested on plain data (tests/unit).

Evaluated per tag, never per digest: deleting a tag removes that tag only, even
when another tag names the same manifest. A manifest goes only when it is
untagged (now, or once this plan's tags are gone), the policy selects untagged
manifests, and no keep rule keeps it. Never deleted: protected tags (the
``protected`` predicate: immutable tags), anything pushed inside the GC grace
period, referrers whose subject stays (signatures, SBOMs, and cosign's
``sha256-<hex>.sig`` tags), children of an index that stays.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ociregistry.lifecycle.policy import KeepRule, RetentionPolicy

LABEL_EXPIRY = "label-expiry"
# cosign's tag scheme: the signature of sha256:<hex> is tagged sha256-<hex>.sig
_COSIGN_TAG = re.compile(r"^(sha256|sha512)-([0-9a-f]{64,128})\.(sig|att|sbom)$")


@dataclass
class TagInfo:
    name: str
    manifest_id: int
    pushed_at: float
    last_pulled_at: float | None = None


@dataclass
class ManifestInfo:
    id: int
    digest: str
    created_at: float
    last_pulled_at: float | None = None
    subject: str | None = None
    artifact_type: str | None = None
    children: tuple[str, ...] = ()
    expires_after: float | None = None  # seconds, from an expiry label or annotation


@dataclass
class RepositorySnapshot:
    name: str
    tags: list[TagInfo] = field(default_factory=list)
    manifests: dict[int, ManifestInfo] = field(default_factory=dict)


@dataclass
class Deletion:
    kind: str  # "tag" or "manifest"
    repository: str
    digest: str
    manifest_id: int
    tag: str | None
    policy: str
    rule: str  # why it goes: the rules that did not keep it, or the expired label
    # What the plan saw (a real run skips the deletion if it changed since):
    pushed_at: float = 0.0
    last_pulled_at: float | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "repository": self.repository, "tag": self.tag,
                "digest": self.digest, "policy": self.policy, "rule": self.rule}


def _never(_repository: str, _tag: str) -> bool:
    return False


@dataclass
class Context:
    now: float
    grace: float = 0.0  # the GC grace period: nothing younger is touched
    protected: Callable[[str, str], bool] = _never  # (repository, tag) -> immutable?


def age(seconds: float) -> str:
    """``3d4h``-style text of a duration, for the reasons given."""
    seconds = max(0, int(seconds))
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return "".join(parts) or f"{seconds}s"


class _Candidate:
    """One thing a rule judges: a tag, or an untagged manifest."""

    __slots__ = ("key", "name", "pushed", "pulled")

    def __init__(self, key: object, name: str, pushed: float, pulled: float | None) -> None:
        self.key, self.name, self.pushed, self.pulled = key, name, pushed, pulled


def _ranks(items: list[_Candidate]) -> tuple[dict[object, int], dict[object, int]]:
    """1-based ranks by push time and by pull time (never pulled: not ranked), newest first."""
    pushed = sorted(items, key=lambda c: (-c.pushed, c.name))
    pulled = sorted((c for c in items if c.pulled is not None),
                    key=lambda c: (-(c.pulled or 0.0), c.name))
    return ({c.key: i for i, c in enumerate(pushed, 1)},
            {c.key: i for i, c in enumerate(pulled, 1)})


def _judge(rule: KeepRule, items: list[_Candidate], now: float) -> dict[object, str | None]:
    """For each item the rule covers: None when kept, else the first condition that failed."""
    by_push, by_pull = _ranks(items)
    pushed_within = _seconds(rule.pushed_within)
    pulled_within = _seconds(rule.pulled_within)
    verdicts: dict[object, str | None] = {}
    for c in items:
        why = None
        if rule.latest_pushed is not None and by_push[c.key] > rule.latest_pushed:
            why = f"pushed rank {by_push[c.key]} > {rule.latest_pushed}"
        elif rule.latest_pulled is not None and (
                c.key not in by_pull or by_pull[c.key] > rule.latest_pulled):
            why = (f"pulled rank {by_pull[c.key]} > {rule.latest_pulled}"
                   if c.key in by_pull else "never pulled")
        elif pushed_within is not None and c.pushed < now - pushed_within:
            why = f"pushed {age(now - c.pushed)} ago > {rule.pushed_within}"
        elif pulled_within is not None and (c.pulled is None or c.pulled < now - pulled_within):
            why = ("never pulled" if c.pulled is None
                   else f"pulled {age(now - c.pulled)} ago > {rule.pulled_within}")
        verdicts[c.key] = why
    return verdicts


def _seconds(duration: str | None) -> float | None:
    from ociregistry.lifecycle.durations import parse_duration

    return None if duration is None else parse_duration(duration)


def _not_kept(policy: RetentionPolicy, items: list[_Candidate], now: float,
              untagged: bool) -> dict[object, str]:
    """Items no keep rule keeps -> the reason (each rule and why it did not keep it)."""
    reasons: dict[object, list[str]] = {c.key: [] for c in items}
    for i, rule in enumerate(policy.keep):
        if rule.tags and untagged:
            for c in items:
                if c.key in reasons:
                    reasons[c.key].append(f"keep[{i}] ({rule.describe()}): applies to tags only")
            continue
        covered = items
        if rule.tags:
            matches = policy.tag_matcher(rule.tags)
            covered = [c for c in items if matches(c.name)]
            covered_keys = {c.key for c in covered}
            for c in items:
                if c.key not in covered_keys and c.key in reasons:
                    reasons[c.key].append(f"keep[{i}] ({rule.describe()}): tag does not match")
        for key, why in _judge(rule, covered, now).items():
            if why is None:
                reasons.pop(key, None)  # kept: rules OR
            elif key in reasons:
                reasons[key].append(f"keep[{i}] ({rule.describe()}): {why}")
    return {key: f"policy {policy.name}: " + "; ".join(why) for key, why in reasons.items()}


def _artifact_ok(policy: RetentionPolicy, manifest: ManifestInfo) -> bool:
    return not policy.artifact_types or manifest.artifact_type in policy.artifact_types


def _referrer_of_present(repo: RepositorySnapshot, tag: str, manifest: ManifestInfo,
                         digests: set[str]) -> bool:
    if manifest.subject and manifest.subject in digests:
        return True
    cosign = _COSIGN_TAG.match(tag)
    return bool(cosign and f"{cosign[1]}:{cosign[2]}" in digests)


def _tag_deletions(repo: RepositorySnapshot, ctx: Context, reasons: dict[str, str],
                   policy: str) -> list[Deletion]:
    """The tags of ``reasons`` that may go, in name order (protections applied)."""
    digests = {m.digest for m in repo.manifests.values()}
    out = []
    for tag in sorted(repo.tags, key=lambda tg: tg.name):
        if tag.name not in reasons:
            continue
        manifest = repo.manifests[tag.manifest_id]
        if (tag.pushed_at > ctx.now - ctx.grace or ctx.protected(repo.name, tag.name)
                or _referrer_of_present(repo, tag.name, manifest, digests)):
            continue
        out.append(Deletion("tag", repo.name, manifest.digest, manifest.id, tag.name, policy,
                            reasons[tag.name], tag.pushed_at, tag.last_pulled_at))
    return out


def plan_policy(policy: RetentionPolicy, repo: RepositorySnapshot,
                ctx: Context) -> list[Deletion]:
    """What ``policy`` deletes in ``repo``: tags first, then untagged manifests."""
    if not policy.selects_repository(repo.name):
        return []
    include = policy.tag_matcher(policy.tags)
    exclude = policy.tag_matcher(policy.exclude_tags)
    selected = [tg for tg in repo.tags if include(tg.name) and not exclude(tg.name)
                and _artifact_ok(policy, repo.manifests[tg.manifest_id])]
    items = [_Candidate(tg.name, tg.name, tg.pushed_at, tg.last_pulled_at) for tg in selected]
    reasons = _not_kept(policy, items, ctx.now, untagged=False)
    deletions = _tag_deletions(repo, ctx, {str(k): v for k, v in reasons.items()}, policy.name)
    if policy.untagged:
        deletions += _untagged_deletions(policy, repo, ctx, {d.tag for d in deletions})
    return deletions


def _untagged_deletions(policy: RetentionPolicy, repo: RepositorySnapshot, ctx: Context,
                        gone_tags: set[str | None]) -> list[Deletion]:
    still_tagged = {tg.manifest_id for tg in repo.tags if tg.name not in gone_tags}
    untagged = [m for m in repo.manifests.values()
                if m.id not in still_tagged and _artifact_ok(policy, m)]
    items = [_Candidate(m.id, m.digest, m.created_at, m.last_pulled_at) for m in untagged]
    reasons = _not_kept(policy, items, ctx.now, untagged=True)
    going = {mid for mid in reasons if repo.manifests[mid].created_at <= ctx.now - ctx.grace}
    # Children of an index that stays, referrers of a subject that stays: never.
    # Repeat, since sparing one index spares its children too.
    while True:
        staying = {m.digest for m in repo.manifests.values() if m.id not in going}
        parents = {child for m in repo.manifests.values() if m.id not in going
                   for child in m.children}
        spared = {mid for mid in going
                  if repo.manifests[mid].digest in parents
                  or (repo.manifests[mid].subject or "") in staying}
        if not spared:
            break
        going -= spared
    return [Deletion("manifest", repo.name, repo.manifests[mid].digest, mid, None, policy.name,
                     reasons[mid], repo.manifests[mid].created_at,
                     repo.manifests[mid].last_pulled_at)
            for mid in sorted(going, key=lambda i: repo.manifests[i].digest)]


def plan_label_expiry(repo: RepositorySnapshot, ctx: Context) -> list[Deletion]:
    """Tags whose image asked to expire (expires-after label) and whose time is over."""
    reasons = {}
    for tag in repo.tags:
        seconds = repo.manifests[tag.manifest_id].expires_after
        if seconds is not None and tag.pushed_at + seconds <= ctx.now:
            reasons[tag.name] = (f"{LABEL_EXPIRY}: expires-after {age(seconds)}, "
                                 f"expired {age(ctx.now - tag.pushed_at - seconds)} ago")
    return _tag_deletions(repo, ctx, reasons, LABEL_EXPIRY) if reasons else []
