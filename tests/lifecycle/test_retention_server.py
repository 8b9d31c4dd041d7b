"""Retention on a real server: policies through the API, dry runs through the API and
the CLI agree, a real run deletes exactly the dry run's list and audits each deletion,
label expiry, referrers and index children kept."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import OCI_INDEX, OCI_MANIFEST, put_manifest, sha256
from tests.lifecycle.support import cli, lifecycle_registry, push_image, wait_for
from tests.ops.test_metrics import scrape, value
from tests.server import RegistryProcess

REPO = "ci/app"
POLICY = {"repositories": ["ci/**"], "exclude_tags": ["stable"], "untagged": True,
          "keep": [{"tags": ["*"], "latest_pushed": 2}]}  # a rule with tags: untagged not kept


@pytest.fixture
def server(tmp_path: Path) -> Any:
    server = lifecycle_registry(tmp_path / "data").start()
    yield server
    server.stop()


def _api(server: RegistryProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{server.url}/api/v1{path}", timeout=120, **kwargs)


def _tags(server: RegistryProcess, repo: str = REPO) -> list[str]:
    return requests.get(f"{server.url}/v2/{repo}/tags/list", timeout=30).json()["tags"] or []


def _exists(server: RegistryProcess, digest: str, repo: str = REPO) -> bool:
    r = requests.head(f"{server.url}/v2/{repo}/manifests/{digest}", timeout=30,
                      headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    return r.status_code == 200


def _content(server: RegistryProcess) -> dict[str, str]:
    """t1..t5 pushed in that order; t5 and stable on one manifest; an untagged image; a
    signature of t1's image; prod/app untouched by the policy."""
    url = server.url
    digests = {}
    for tag in ("t1", "t2", "t3", "t4"):
        digests[tag] = push_image(url, REPO, [tag])
        time.sleep(0.01)  # distinct push times
    digests["t5"] = push_image(url, REPO, ["t5", "stable"])
    digests["loose"] = push_image(url, REPO, [])
    digests["sig"] = push_image(url, REPO, [], extra={
        "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "subject": {"mediaType": OCI_MANIFEST, "digest": digests["t1"], "size": 1}})
    digests["prod"] = push_image(url, "prod/app", ["old", "new"])
    return digests


def test_dry_run_then_real_run_delete_exactly_the_plan(server: RegistryProcess,
                                                       tmp_path: Path) -> None:
    d = _content(server)
    r = _api(server, "PUT", "/retention/policies/ci-builds", json=POLICY)
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "api"

    dry = _api(server, "POST", "/retention/runs", json={"policy": "ci-builds"})
    assert dry.status_code == 200, dry.text
    [run] = dry.json()["runs"]
    planned = {(x["kind"], x["tag"] or x["digest"]) for x in run["deletions"]}
    # t1..t3 go (t4, t5 are the latest 2; stable is excluded); then t1..t3's images and the
    # loose one are untagged, and the signature's subject goes with t1's image.
    assert planned == {("tag", "t1"), ("tag", "t2"), ("tag", "t3"),
                       *(("manifest", d[k]) for k in ("t1", "t2", "t3", "loose", "sig"))}
    assert all(x["rule"].startswith("policy ci-builds: keep[0] (tags * and latest_pushed 2)")
               for x in run["deletions"])
    assert _tags(server) == ["stable", "t1", "t2", "t3", "t4", "t5"]  # nothing deleted

    # The CLI's dry run, on the same data, plans the same list.
    out = cli(server, "retention", "run", "--dry-run", "--policy", "ci-builds",
              "--json")
    assert out.returncode == 0, out.stderr
    [cli_run] = json.loads(out.stdout)
    assert {(x["kind"], x["tag"] or x["digest"]) for x in cli_run["deletions"]} == planned

    real = _api(server, "POST", "/retention/runs",
                json={"policy": "ci-builds", "dry_run": False})
    assert real.status_code == 200, real.text
    [done] = real.json()["runs"]
    assert {(x["kind"], x["tag"] or x["digest"]) for x in done["deletions"]} == planned
    assert (done["tags"], done["manifests"], done["skipped"]) == (3, 5, 0)
    assert _tags(server) == ["stable", "t4", "t5"]
    assert not any(_exists(server, d[k]) for k in ("t1", "t2", "t3", "loose", "sig"))
    assert _tags(server, "prod/app") == ["new", "old"]

    audit = _api(server, "GET", f"/retention/runs/{done['run_id']}").json()
    assert audit["status"] == "done" and audit["dry_run"] is False
    assert len(audit["deletions"]) == 8
    assert {e["actor"] for e in audit["deletions"]} == {"retention:ci-builds"}
    runs = _api(server, "GET", "/retention/runs", params={"policy": "ci-builds"}).json()
    assert [r["dry_run"] for r in runs["items"]] == [False, True, True]

    again = _api(server, "POST", "/retention/runs", json={"policy": "ci-builds"}).json()
    assert again["runs"][0]["deletions"] == []

    samples = scrape(server.url + "/metrics")
    assert value(samples, "registry_retention_deleted_total", kind="tag") == 3
    assert value(samples, "registry_retention_deleted_total", kind="manifest") == 5
    assert value(samples, "registry_retention_runs_total", outcome="success") == 1


def test_referrers_of_kept_images_and_children_of_kept_indexes_stay(
        server: RegistryProcess) -> None:
    url = server.url
    kept = push_image(url, REPO, ["v1"])
    sig = push_image(url, REPO, [], extra={
        "artifactType": "application/vnd.example.sbom",
        "subject": {"mediaType": OCI_MANIFEST, "digest": kept, "size": 1}})
    child = push_image(url, REPO, [])
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": child, "size": _size(url, child),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    assert put_manifest(url, REPO, "multi", index, OCI_INDEX).status_code == 201
    policy = {"untagged": True, "repositories": ["ci/**"], "keep": [{"always": True,
                                                                    "tags": ["*"]}]}
    assert _api(server, "PUT", "/retention/policies/p", json=policy).status_code == 200
    real = _api(server, "POST", "/retention/runs", json={"policy": "p", "dry_run": False})
    assert real.json()["runs"][0]["deletions"] == []
    assert _exists(server, sig) and _exists(server, child) and _exists(server, sha256(index))


def _size(url: str, digest: str) -> int:
    r = requests.get(f"{url}/v2/{REPO}/manifests/{digest}", timeout=30,
                     headers={"Accept": OCI_MANIFEST})
    return len(r.content)


def test_label_expiry_removes_expired_tags_only(server: RegistryProcess) -> None:
    url = server.url
    push_image(url, REPO, ["ci-1"], labels={"quay.expires-after": "1s"})
    push_image(url, REPO, ["ci-2"], annotations={"ociregistry.expires-after": "1s"})
    push_image(url, REPO, ["ci-3"], labels={"ociregistry.expires-after": "2w"})
    push_image(url, REPO, ["release"])
    time.sleep(1.2)
    out = cli(server, "retention", "run", "--policy", "label-expiry")
    assert out.returncode == 0, out.stderr
    assert "deleted tag ci/app:ci-1" in out.stdout and "deleted tag ci/app:ci-2" in out.stdout
    assert _tags(server) == ["ci-3", "release"]


def test_bad_policies_and_unknown_names_are_problems(server: RegistryProcess) -> None:
    for body in ({"keep": []}, {"keep": [{"pushed_within": "soon"}]},
                 {"keep": [{"always": True}], "schedule": "sometimes"}, {}):
        r = _api(server, "PUT", "/retention/policies/bad", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["Content-Type"] == "application/problem+json"
    assert _api(server, "GET", "/retention/policies/nope").status_code == 404
    assert _api(server, "DELETE", "/retention/policies/nope").status_code == 404
    assert _api(server, "POST", "/retention/runs", json={"policy": "nope"}).status_code == 404
    assert _api(server, "GET", "/retention/runs/999").status_code == 404


def test_policies_of_the_config_file_are_read_only(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"retention": {"policies": [
        {"name": "from-file", "repositories": ["ci/**"], "keep": [{"latest_pushed": 1}]}]}}))
    server = RegistryProcess(tmp_path / "data", config=config,
                             env={"OCIREGISTRY_GC__GRACE_PERIOD_SECONDS": "0"}).start()
    try:
        items = _api(server, "GET", "/retention/policies").json()["items"]
        assert [(p["name"], p["source"]) for p in items] == [("from-file", "config")]
        r = _api(server, "PUT", "/retention/policies/from-file",
                 json={"keep": [{"always": True}]})
        assert r.status_code == 409
        assert _api(server, "DELETE", "/retention/policies/from-file").status_code == 409
        listed = cli(server, "retention", "policies", "--config", str(config))
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("from-file\tconfig\tenabled\ton demand\tci/**")
        push_image(server.url, REPO, ["a"])
        time.sleep(0.01)
        push_image(server.url, REPO, ["b"])
        out = cli(server, "retention", "run", "--config", str(config))
        assert out.returncode == 0, out.stderr
        assert "deleted tag ci/app:a" in out.stdout
        wait_for(lambda: _tags(server) == ["b"], what="tag a gone")
    finally:
        server.stop()
