"""The referrers API: an OCI index of the manifests whose subject is a digest."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests

from tests.helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    assert_error,
    make_image,
    next_link,
    push_blob,
    push_empty_config,
    put_manifest,
    sha256,
)

SBOM = "application/vnd.example.sbom.v1+json"
SIG = "application/vnd.example.signature.v1"


@pytest.fixture
def subject(registry, repo) -> dict[str, Any]:
    """An image pushed to ``repo``; its descriptor."""
    body = json.dumps(make_image(registry.url, repo, layers=1)).encode()
    r = put_manifest(registry.url, repo, "subject", body)
    assert r.status_code == 201, r.text
    return {"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body)}


def _artifact(registry, repo: str, subject: dict, artifact_type: str | None = None,
              config_type: str | None = None, annotations: dict | None = None) -> bytes:
    if config_type:
        data = b'{"kind": "config"}'
        config = {"mediaType": config_type, "digest": push_blob(registry.url, repo, data),
                  "size": len(data)}
    else:
        config = push_empty_config(registry.url, repo)
    payload = os.urandom(64)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [{"mediaType": "application/octet-stream", "size": len(payload),
                    "digest": push_blob(registry.url, repo, payload)}],
        "subject": subject,
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    body = json.dumps(doc).encode()
    r = put_manifest(registry.url, repo, sha256(body), body)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject["digest"]
    return body


def _referrers(registry, repo: str, digest: str, **params: str) -> requests.Response:
    return requests.get(f"{registry.url}/v2/{repo}/referrers/{digest}", params=params)


def _by_digest(index: dict) -> dict[str, dict]:
    return {d["digest"]: d for d in index["manifests"]}


def test_no_referrers_is_an_empty_index_not_404(registry, repo, subject):
    r = _referrers(registry, repo, subject["digest"])
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    assert index["manifests"] == []
    # Also for a digest nothing in the registry has.
    r = _referrers(registry, repo, sha256(os.urandom(8)))
    assert r.status_code == 200
    assert r.json()["manifests"] == []


def test_referrers_list_descriptors_of_the_artifacts(registry, repo, subject):
    sig = _artifact(registry, repo, subject, artifact_type=SIG)
    sbom = _artifact(registry, repo, subject, artifact_type=SBOM)
    r = _referrers(registry, repo, subject["digest"])
    assert r.status_code == 200
    found = _by_digest(r.json())
    assert set(found) == {sha256(sig), sha256(sbom)}
    assert found[sha256(sig)] == {"mediaType": OCI_MANIFEST, "digest": sha256(sig),
                                  "size": len(sig), "artifactType": SIG}
    assert found[sha256(sbom)]["artifactType"] == SBOM
    assert found[sha256(sbom)]["size"] == len(sbom)


def test_artifact_type_falls_back_to_the_config_media_type(registry, repo, subject):
    config_type = "application/vnd.example.config.v1+json"
    body = _artifact(registry, repo, subject, config_type=config_type)
    found = _by_digest(_referrers(registry, repo, subject["digest"]).json())
    assert found[sha256(body)]["artifactType"] == config_type
    # artifactType wins over the config media type when both are set.
    both = _artifact(registry, repo, subject, artifact_type=SIG, config_type=config_type)
    found = _by_digest(_referrers(registry, repo, subject["digest"]).json())
    assert found[sha256(both)]["artifactType"] == SIG


def test_annotations_are_copied(registry, repo, subject):
    annotations = {"org.opencontainers.image.created": "2024-05-01T00:00:00Z",
                   "com.example.key": "value with spaces"}
    body = _artifact(registry, repo, subject, artifact_type=SIG, annotations=annotations)
    found = _by_digest(_referrers(registry, repo, subject["digest"]).json())
    assert found[sha256(body)]["annotations"] == annotations


def test_index_with_a_subject_is_a_referrer(registry, repo, subject):
    child = _artifact(registry, repo, {**subject, "digest": sha256(b"other subject")},
                      artifact_type=SIG)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(child),
                       "size": len(child)}],
        "subject": subject,
        "annotations": {"k": "v"},
    }
    body = json.dumps(doc).encode()
    r = put_manifest(registry.url, repo, sha256(body), body, OCI_INDEX)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject["digest"]
    found = _by_digest(_referrers(registry, repo, subject["digest"]).json())
    assert found[sha256(body)] == {"mediaType": OCI_INDEX, "digest": sha256(body),
                                   "size": len(body),
                                   "artifactType": "application/vnd.example.bundle",
                                   "annotations": {"k": "v"}}


def test_artifact_type_filter(registry, repo, subject):
    sig = _artifact(registry, repo, subject, artifact_type=SIG)
    sbom = _artifact(registry, repo, subject, artifact_type=SBOM)
    r = _referrers(registry, repo, subject["digest"], artifactType=SBOM)
    assert r.status_code == 200
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sha256(sbom)]
    r = _referrers(registry, repo, subject["digest"], artifactType=SIG)
    assert [d["digest"] for d in r.json()["manifests"]] == [sha256(sig)]
    r = _referrers(registry, repo, subject["digest"], artifactType="application/none")
    assert r.json()["manifests"] == []
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    # Without a filter: both, and no OCI-Filters-Applied.
    r = _referrers(registry, repo, subject["digest"])
    assert len(r.json()["manifests"]) == 2
    assert "OCI-Filters-Applied" not in r.headers


def test_referrers_only_from_the_same_repository(registry, repo, subject):
    mine = _artifact(registry, repo, subject, artifact_type=SIG)
    other = repo + "-other"
    theirs = _artifact(registry, other, subject, artifact_type=SIG)
    assert [d["digest"] for d in _referrers(registry, repo, subject["digest"]).json()[
        "manifests"]] == [sha256(mine)]
    assert [d["digest"] for d in _referrers(registry, other, subject["digest"]).json()[
        "manifests"]] == [sha256(theirs)]


def test_deleted_referrer_disappears(registry, repo, subject):
    keep = _artifact(registry, repo, subject, artifact_type=SIG)
    gone = _artifact(registry, repo, subject, artifact_type=SBOM)
    r = requests.delete(f"{registry.url}/v2/{repo}/manifests/{sha256(gone)}")
    assert r.status_code == 202
    found = _by_digest(_referrers(registry, repo, subject["digest"]).json())
    assert set(found) == {sha256(keep)}


def test_referrers_to_a_subject_pushed_later(registry, repo):
    body = json.dumps(make_image(registry.url, repo, layers=1)).encode()
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body)}
    sig = _artifact(registry, repo, subject, artifact_type=SIG)
    assert put_manifest(registry.url, repo, "late", body).status_code == 201
    found = _by_digest(_referrers(registry, repo, subject["digest"]).json())
    assert set(found) == {sha256(sig)}


@pytest.mark.parametrize("bad", ["sha256:abc", "latest", "sha256:" + "Z" * 64])
def test_invalid_digest_is_400(registry, repo, subject, bad):
    assert_error(_referrers(registry, repo, bad), 400, "DIGEST_INVALID")


def test_many_referrers_are_paged_with_link(registry, repo, subject):
    """More referrers than one page holds (1000): the Link header leads to the rest."""
    config = push_empty_config(registry.url, repo)
    pushed = set()
    with requests.Session() as http:
        for i in range(1005):
            body = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG,
                "config": config, "layers": [], "subject": subject,
                "annotations": {"i": str(i)},
            }).encode()
            r = http.put(f"{registry.url}/v2/{repo}/manifests/{sha256(body)}", data=body,
                         headers={"Content-Type": OCI_MANIFEST})
            assert r.status_code == 201, r.text
            pushed.add(sha256(body))
        seen: list[str] = []
        r = http.get(f"{registry.url}/v2/{repo}/referrers/{subject['digest']}")
        pages = 0
        while True:
            assert r.status_code == 200
            pages += 1
            seen += [d["digest"] for d in r.json()["manifests"]]
            url = next_link(registry.url, r)
            if url is None:
                break
            assert pages < 10, "Link headers never end"
            r = http.get(url)
    assert pages >= 2
    assert len(seen) == len(set(seen)) == 1005
    assert set(seen) == pushed
    # With a filter, every page says so and the Link keeps the filter.
    other = _artifact(registry, repo, subject, artifact_type=SBOM)
    filtered: list[str] = []
    r = requests.get(f"{registry.url}/v2/{repo}/referrers/{subject['digest']}",
                     params={"artifactType": SIG})
    while True:
        assert r.status_code == 200
        assert r.headers["OCI-Filters-Applied"] == "artifactType"
        filtered += [d["digest"] for d in r.json()["manifests"]]
        url = next_link(registry.url, r)
        if url is None:
            break
        assert len(filtered) < 2000
        r = requests.get(url)
    assert set(filtered) == pushed
    assert sha256(other) not in filtered
