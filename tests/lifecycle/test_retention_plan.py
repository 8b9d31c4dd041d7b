"""Every retention rule on plain data (lifecycle/plan.py): one table per concern."""

from __future__ import annotations

from typing import Any

import pytest

from ociregistry.lifecycle.plan import (
    Context,
    ManifestInfo,
    RepositorySnapshot,
    TagInfo,
    plan_label_expiry,
    plan_policy,
)
from ociregistry.lifecycle.policy import RetentionPolicy

NOW = 1_000_000_000.0
H, D = 3600.0, 86400.0


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def repo(tags: dict[str, tuple[int, float, float | None]], manifests: dict[int, dict] | None = None,
         name: str = "ci/app") -> RepositorySnapshot:
    """tags: name -> (manifest number, pushed hours ago, pulled hours ago or None)."""
    snap = RepositorySnapshot(name)
    numbers = {m for m, _, _ in tags.values()} | set(manifests or {})
    for n in sorted(numbers):
        extra = dict((manifests or {}).get(n, {}))
        created = NOW - extra.pop("created_h", 1000) * H
        pulled_h = extra.pop("pulled_h", None)
        snap.manifests[n] = ManifestInfo(n, digest(n), created,
                                         None if pulled_h is None else NOW - pulled_h * H,
                                         **extra)
    for tag, (n, pushed_h, pulled_h) in tags.items():
        snap.tags.append(TagInfo(tag, n, NOW - pushed_h * H,
                                 None if pulled_h is None else NOW - pulled_h * H))
    return snap


def policy(**fields: Any) -> RetentionPolicy:
    return RetentionPolicy.model_validate({"name": "p", **fields})


def gone_tags(pol: RetentionPolicy, snap: RepositorySnapshot, **ctx: Any) -> list[str]:
    return [d.tag for d in plan_policy(pol, snap, Context(now=NOW, **ctx)) if d.kind == "tag"]


def gone_manifests(pol: RetentionPolicy, snap: RepositorySnapshot, **ctx: Any) -> list[int]:
    return [d.manifest_id for d in plan_policy(pol, snap, Context(now=NOW, **ctx))
            if d.kind == "manifest"]


# Five tags on five manifests: a pushed 1h ago ... e 5h ago; pulled: a never, b 1h,
# c 50h, d 2h, e never.
FIVE = {"a": (1, 1, None), "b": (2, 2, 1), "c": (3, 3, 50), "d": (4, 4, 2), "e": (5, 5, None)}

RULES = [
    # keep rules -> tags that go
    ("latest_pushed", [{"latest_pushed": 2}], ["c", "d", "e"]),
    ("latest_pushed 0 keeps nothing", [{"latest_pushed": 0}], ["a", "b", "c", "d", "e"]),
    ("latest_pulled ranks pulled tags only", [{"latest_pulled": 2}], ["a", "c", "e"]),
    ("pushed_within", [{"pushed_within": "3h"}], ["d", "e"]),
    ("pulled_within", [{"pulled_within": "1d"}], ["a", "c", "e"]),
    ("always", [{"always": True}], []),
    ("tags + always keeps those tags", [{"tags": ["a", "e"], "always": True}], ["b", "c", "d"]),
    ("a kept tag stays kept whatever later rules say",
     [{"latest_pushed": 1}, {"tags": ["e"], "always": True}, {"pushed_within": "1m"}],
     ["b", "c", "d"]),
    # AND inside one rule: among the latest 3 AND pulled within 1 day -> b only
    ("AND within a rule", [{"latest_pushed": 3, "pulled_within": "1d"}],
     ["a", "c", "d", "e"]),
    # OR across rules: latest 1 (a) OR pulled within 1 day (b, d)
    ("OR across rules", [{"latest_pushed": 1}, {"pulled_within": "1d"}], ["c", "e"]),
    # "keep the latest 3, but only for 100 hours" (zot can't say it): all are < 100h old
    ("latest N for a while", [{"latest_pushed": 3, "pushed_within": "100h"}], ["d", "e"]),
    ("latest N for a short while", [{"latest_pushed": 3, "pushed_within": "2h"}],
     ["c", "d", "e"]),
    # a rule's tags narrow what it ranks: the latest 1 of d, e is d
    ("ranking within a rule's tags", [{"tags": ["d", "e"], "latest_pushed": 1}],
     ["a", "b", "c", "e"]),
]


@pytest.mark.parametrize(("keep", "expected"), [(k, e) for _, k, e in RULES],
                         ids=[name for name, _, _ in RULES])
def test_keep_rules(keep: list[dict], expected: list[str]) -> None:
    assert gone_tags(policy(keep=keep), repo(FIVE)) == expected


HELM = "application/vnd.cncf.helm.config.v1+json"
SELECTION = [
    ("include glob", {"tags": ["[a-c]"]}, ["b", "c"]),
    ("exclude glob", {"exclude_tags": ["b*", "c"]}, ["d", "e"]),
    ("regex", {"tag_match": "regex", "tags": ["[bcd]"], "exclude_tags": ["d"]}, ["c"]),
    ("a regex matches whole tags", {"tag_match": "regex", "tags": ["b|c."]}, []),
    ("repository not selected", {"repositories": ["prod/**"]}, []),
    ("repository excluded", {"exclude_repositories": ["ci/*"]}, []),
    ("** across components", {"repositories": ["**/app"]}, ["b", "c", "d", "e"]),
    ("artifact type", {"artifact_types": [HELM]}, ["d"]),
]


@pytest.mark.parametrize(("fields", "expected"), [(f, e) for _, f, e in SELECTION],
                         ids=[name for name, _, _ in SELECTION])
def test_selection(fields: dict, expected: list[str]) -> None:
    # keep the latest of what is selected; the rest goes
    snap = repo(FIVE, {3: {"artifact_type": HELM}, 4: {"artifact_type": HELM}})
    assert gone_tags(policy(keep=[{"latest_pushed": 1}], **fields), snap) == expected


def test_ranking_is_among_selected_tags() -> None:
    # "a" is excluded: the latest selected one is b, which is kept
    assert gone_tags(policy(exclude_tags=["a"], keep=[{"latest_pushed": 1}]),
                     repo(FIVE)) == ["c", "d", "e"]


def test_a_multi_tag_digest_loses_only_the_tags_that_go() -> None:
    # old and new name the same manifest: old goes, new stays, the manifest stays
    snap = repo({"new": (1, 1, None), "old": (1, 50, None)})
    pol = policy(untagged=True, keep=[{"pushed_within": "1d"}])
    assert gone_tags(pol, snap) == ["old"]
    assert gone_manifests(pol, snap) == []


def test_a_manifest_goes_once_all_its_tags_go_and_untagged_is_selected() -> None:
    snap = repo({"x": (1, 50, None), "y": (1, 60, None), "z": (2, 1, None)})
    keep = [{"pushed_within": "1d"}]
    assert gone_manifests(policy(untagged=True, keep=keep), snap) == [1]
    assert gone_manifests(policy(untagged=False, keep=keep), snap) == []


UNTAGGED = [
    # manifests (number -> fields), keep, expected manifests that go
    ("old untagged goes", {7: {"created_h": 50}}, [{"pushed_within": "1d"}], [7]),
    ("young untagged stays", {7: {"created_h": 5}}, [{"pushed_within": "1d"}], []),
    ("latest untagged kept", {7: {"created_h": 50}, 8: {"created_h": 60}},
     [{"latest_pushed": 1}], [8]),
    ("pulled untagged kept", {7: {"created_h": 50, "pulled_h": 1}},
     [{"pulled_within": "1d"}], []),
    ("a rule with tags never keeps an untagged one", {7: {"created_h": 50}},
     [{"tags": ["*"], "always": True}], [7]),
    # index 7 (untagged, going) lists 8: both go, index first in the plan's order
    ("children of a going index go", {7: {"children": (digest(8),)}, 8: {}},
     [{"pushed_within": "1d"}], [7, 8]),
    # index 1 is tagged (kept): its untagged child 8 stays
    ("children of a kept index stay", {1: {"children": (digest(8),)}, 8: {}},
     [{"pushed_within": "1d"}], []),
    # 8 refers to 1 (tagged, kept): a signature of a kept image stays
    ("referrers of a kept subject stay", {8: {"subject": digest(1)}},
     [{"pushed_within": "1d"}], []),
    ("referrers of a missing subject go", {8: {"subject": digest(99)}},
     [{"pushed_within": "1d"}], [8]),
    # 7 is untagged and goes; its referrer 8 goes with it
    ("referrers of a going subject go", {7: {}, 8: {"subject": digest(7)}},
     [{"pushed_within": "1d"}], [7, 8]),
    # a child of a kept index that is itself an index: its children stay too
    ("grandchildren of a kept index stay",
     {1: {"children": (digest(7),)}, 7: {"children": (digest(8),)}, 8: {}},
     [{"pushed_within": "1d"}], []),
    ("artifact type filter on untagged", {7: {"artifact_type": "x"}, 8: {"artifact_type": "y"}},
     [{"pushed_within": "1d"}], [7]),
]


@pytest.mark.parametrize(("manifests", "keep", "expected"), [u[1:] for u in UNTAGGED],
                         ids=[u[0] for u in UNTAGGED])
def test_untagged_manifests(manifests: dict, keep: list[dict], expected: list[int]) -> None:
    snap = repo({"latest": (1, 1, None)}, manifests)
    types = ["x"] if "artifact type" in str(manifests) or any(
        "artifact_type" in m for m in manifests.values()) else []
    pol = policy(untagged=True, keep=keep, artifact_types=types, exclude_tags=["latest"])
    assert sorted(gone_manifests(pol, snap)) == expected


PROTECTIONS = [
    ("grace period", {"grace": 3.5 * H}, ["d", "e"]),
    ("protected (immutable) tag", {"protected": lambda r, t: t == "e"}, ["b", "c", "d"]),
]


@pytest.mark.parametrize(("ctx", "expected"), [p[1:] for p in PROTECTIONS],
                         ids=[p[0] for p in PROTECTIONS])
def test_protections(ctx: dict, expected: list[str]) -> None:
    assert gone_tags(policy(keep=[{"latest_pushed": 1}]), repo(FIVE), **ctx) == expected


def test_tagged_referrers_of_a_kept_subject_stay() -> None:
    # tag "sig" names manifest 2 whose subject is manifest 1; a cosign-style tag names 3
    cosign = f"sha256-{1:064x}.sig"
    snap = repo({"v1": (1, 100, None), "sig": (2, 100, None), cosign: (3, 100, None)},
                {2: {"subject": digest(1)}})
    assert gone_tags(policy(tags=["*"], exclude_tags=["v1"], keep=[{"latest_pushed": 0}]),
                     snap) == []


def test_manifests_inside_the_grace_period_stay() -> None:
    snap = repo({"latest": (1, 1, None)}, {7: {"created_h": 0.5}})
    pol = policy(untagged=True, exclude_tags=["latest"], keep=[{"latest_pushed": 0}])
    assert gone_manifests(pol, snap, grace=H) == []
    assert gone_manifests(pol, snap, grace=0.25 * H) == [7]


def test_the_reason_names_each_rule() -> None:
    [deletion] = [d for d in plan_policy(
        policy(keep=[{"latest_pushed": 2}, {"pulled_within": "1d"}]), repo(FIVE),
        Context(now=NOW)) if d.tag == "c"]
    assert deletion.rule == ("policy p: keep[0] (latest_pushed 2): pushed rank 3 > 2; "
                             "keep[1] (pulled_within 1d): pulled 2d2h ago > 1d")


EXPIRY = [
    # expires_after seconds, tag pushed hours ago, expected to go
    ("expired", 2 * H, 3, True),
    ("not yet", 2 * H, 1, False),
    ("no label", None, 1000, False),
    ("weeks", 2 * 7 * D, 15 * 24, True),
]


@pytest.mark.parametrize(("seconds", "pushed_h", "goes"), [e[1:] for e in EXPIRY],
                         ids=[e[0] for e in EXPIRY])
def test_label_expiry(seconds: float | None, pushed_h: float, goes: bool) -> None:
    snap = repo({"ci-123": (1, pushed_h, None), "keep": (2, pushed_h, None)},
                {1: {"expires_after": seconds}})
    gone = [d.tag for d in plan_label_expiry(snap, Context(now=NOW))]
    assert gone == (["ci-123"] if goes else [])


def test_label_expiry_spares_protected_tags() -> None:
    snap = repo({"ci-1": (1, 10, None)}, {1: {"expires_after": H}})
    assert plan_label_expiry(snap, Context(now=NOW, protected=lambda r, t: True)) == []


@pytest.mark.parametrize("bad", [
    {"keep": []},
    {"keep": [{}]},
    {"keep": [{"pushed_within": "2 weeks"}]},
    {"keep": [{"latest_pushed": -1}]},
    {"tag_match": "regex", "tags": ["("], "keep": [{"always": True}]},
    {"schedule": "every day", "keep": [{"always": True}]},
    {"name": "Bad Name", "keep": [{"always": True}]},
])
def test_bad_policies_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy.model_validate({"name": "p", **bad})
