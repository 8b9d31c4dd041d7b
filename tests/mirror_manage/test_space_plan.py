"""The eviction rules on plain data (mirror/space.py): unused tags, the size budget
(least recently used first, deduplicated blobs), pins, immutable tags, what a tag or
an index holds, the grace period."""

from __future__ import annotations

from ociregistry.mirror.space import (
    CachedManifest,
    CachedTag,
    CacheSnapshot,
    SpaceRules,
    pinned_matcher,
    plan_space,
)

DAY = 86400.0
NOW = 1_000 * DAY
REPO = "hub/library/alpine"


def d(n: int) -> str:
    return f"sha256:{n:064x}"


def snapshot(*images: tuple[int, str, float, list[str]], repo: str = REPO) -> CacheSnapshot:
    """(manifest id, tag, days since last pull, blobs) each; every blob is 100 bytes."""
    snap = CacheSnapshot("hub")
    for mid, tag, days, blobs in images:
        snap.manifests[mid] = CachedManifest(mid, repo, d(mid), 10, NOW - 30 * DAY,
                                             blobs=tuple(blobs))
        snap.tags.append(CachedTag(repo, tag, mid, NOW - 30 * DAY, NOW - days * DAY))
        for b in blobs:
            snap.blob_sizes[b] = 100
    return snap


def gone(plan) -> list[str]:
    return [f"{x.kind}:{x.tag or x.manifest_id}" for x in plan.deletions]


def test_tags_unused_longer_than_the_limit_go_with_their_manifests() -> None:
    snap = snapshot((1, "old", 9, ["a"]), (2, "recent", 2, ["b"]))
    plan = plan_space(snap, SpaceRules(NOW, unused_after=7 * DAY))
    assert gone(plan) == ["tag:old", "manifest:1"]
    assert "unused for 1w2d" in plan.deletions[0].rule
    assert plan.bytes_before == 220 and plan.bytes_after == 110
    assert plan.deletions[0].policy == "mirror:hub"


def test_zero_never_evicts_by_age() -> None:
    snap = snapshot((1, "old", 900, ["a"]))
    assert plan_space(snap, SpaceRules(NOW, unused_after=0)).deletions == []


def test_a_never_pulled_tag_counts_from_its_fill() -> None:
    snap = snapshot((1, "filled", 0, ["a"]))
    snap.tags[0].last_pulled_at = None
    snap.tags[0].pushed_at = NOW - 3 * DAY
    assert plan_space(snap, SpaceRules(NOW, unused_after=7 * DAY)).deletions == []
    assert gone(plan_space(snap, SpaceRules(NOW, unused_after=2 * DAY))) == [
        "tag:filled", "manifest:1"]


def test_the_budget_evicts_least_recently_used_first_until_it_fits() -> None:
    snap = snapshot((1, "a", 5, ["x1"]), (2, "b", 1, ["x2"]), (3, "c", 3, ["x3"]))
    plan = plan_space(snap, SpaceRules(NOW, budget=230))  # 330 held
    assert gone(plan) == ["tag:a", "manifest:1"]
    plan = plan_space(snap, SpaceRules(NOW, budget=120))
    assert gone(plan) == ["tag:a", "manifest:1", "tag:c", "manifest:3"]
    assert plan.bytes_after == 110
    assert "size budget of 120 bytes" in plan.deletions[0].rule


def test_shared_blobs_count_once_and_free_nothing_while_held() -> None:
    # Two images share a 100-byte base layer: 10+10 manifests, base, two tops = 320.
    snap = snapshot((1, "old", 5, ["base", "top1"]), (2, "new", 1, ["base", "top2"]))
    assert plan_space(snap, SpaceRules(NOW)).bytes_before == 320
    plan = plan_space(snap, SpaceRules(NOW, budget=300))
    assert gone(plan) == ["tag:old", "manifest:1"] and plan.bytes_after == 210


def test_a_manifest_with_two_tags_goes_only_with_both() -> None:
    snap = snapshot((1, "old", 9, ["a"]))
    snap.tags.append(CachedTag(REPO, "alias", 1, NOW - 30 * DAY, NOW - 1 * DAY))
    assert gone(plan_space(snap, SpaceRules(NOW, unused_after=7 * DAY))) == ["tag:old"]


def test_pins_keep_tags_repositories_and_what_they_hold() -> None:
    snap = snapshot((1, "3.19", 9, ["a"]), (2, "edge", 9, ["b"]))
    only_3 = pinned_matcher("hub", ["library/alpine:3.*"])
    assert gone(plan_space(snap, SpaceRules(NOW, unused_after=DAY, pinned=only_3))) == [
        "tag:edge", "manifest:2"]
    whole = pinned_matcher("hub", ["library/*"])
    assert plan_space(snap, SpaceRules(NOW, unused_after=DAY, pinned=whole)).deletions == []
    other = pinned_matcher("hub", ["library/busybox", "library/alpine:4.*"])
    assert len(plan_space(snap, SpaceRules(NOW, unused_after=DAY, pinned=other)).deletions) == 4
    # a pin names upstream repositories, never another upstream's local names
    assert not pinned_matcher("hub", ["**"])("ghcr/x/y", "latest")
    assert pinned_matcher("hub", ["**"])("hub/x/y", None)


def test_immutable_tags_are_never_evicted() -> None:
    snap = snapshot((1, "v1", 9, ["a"]))
    rules = SpaceRules(NOW, unused_after=DAY, budget=0, protected=lambda _r, tag: tag == "v1")
    assert plan_space(snap, rules).deletions == []


def test_an_index_goes_with_its_children_and_a_child_pull_keeps_it() -> None:
    snap = snapshot((1, "multi", 9, []))
    snap.manifests[1].children = (d(2), d(3))
    for child in (2, 3):
        snap.manifests[child] = CachedManifest(child, REPO, d(child), 10, NOW - 30 * DAY,
                                               blobs=(f"layer{child}",))
        snap.blob_sizes[f"layer{child}"] = 100
    plan = plan_space(snap, SpaceRules(NOW, unused_after=7 * DAY))
    assert gone(plan) == ["tag:multi", "manifest:1", "manifest:2", "manifest:3"]
    assert "held only by evicted content" in plan.deletions[2].rule
    # One platform pulled by digest yesterday keeps the index's tag.
    snap.manifests[3].last_pulled_at = NOW - DAY
    assert plan_space(snap, SpaceRules(NOW, unused_after=7 * DAY)).deletions == []


def test_untagged_manifests_are_judged_on_their_own_times() -> None:
    snap = snapshot((1, "t", 1, ["a"]))
    snap.manifests[5] = CachedManifest(5, REPO, d(5), 10, NOW - 30 * DAY, NOW - 9 * DAY,
                                       blobs=("z",))
    snap.blob_sizes["z"] = 100
    assert gone(plan_space(snap, SpaceRules(NOW, unused_after=7 * DAY))) == ["manifest:5"]


def test_referrers_go_with_their_subject() -> None:
    snap = snapshot((1, "t", 9, ["a"]))
    snap.manifests[7] = CachedManifest(7, REPO, d(7), 10, NOW - 30 * DAY, subject=d(1))
    assert gone(plan_space(snap, SpaceRules(NOW, unused_after=7 * DAY))) == [
        "tag:t", "manifest:1", "manifest:7"]


def test_manifests_inside_the_grace_period_stay() -> None:
    snap = snapshot((1, "t", 0, ["a"]))
    snap.manifests[1].created_at = snap.tags[0].pushed_at = NOW - 5400
    snap.tags[0].last_pulled_at = NOW - 5400
    plan = plan_space(snap, SpaceRules(NOW, unused_after=3600, grace=7200))
    assert gone(plan) == ["tag:t"] and plan.bytes_after == plan.bytes_before
    assert gone(plan_space(snap, SpaceRules(NOW, unused_after=3600, grace=60))) == [
        "tag:t", "manifest:1"]
